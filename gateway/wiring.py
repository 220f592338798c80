"""The one place the layers are wired: engine, system ports, process services and
experience services, built from settings. Routes receive these by name through
Litestar's dependency injection (see ``dependencies``)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from litestar import Request
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from canonical.access import Caller
from canonical.persistence import create_engine, create_sqlite_writer, session_factory
from experience_apis.caching import ViewCache
from experience_apis.finance.service import FinanceService
from experience_apis.partner.service import PartnerService
from experience_apis.portal.service import PortalService
from gateway.auth.clients import ClientRegistry
from gateway.auth.keys import KeyRing
from gateway.auth.server import TokenIssuer
from gateway.auth.tokens import KeySource, LocalKeys, RemoteJwks, TokenVerifier
from gateway.fingerprint import view_namespace
from gateway.rate_limit import RateLimits, build_rate_limits
from gateway.settings import Settings
from process_apis.audit import AuditLog
from process_apis.billing.runner import BillingRunner
from process_apis.billing.runs import BillingRunService
from process_apis.exceptions.service import ExceptionService
from process_apis.exceptions.workbench import ExceptionWorkbench
from process_apis.idempotency import DatabaseIdempotencyStore, IdempotencyStore
from process_apis.invoices.lifecycle import InvoiceLifecycle
from process_apis.invoices.queries import DocumentQueries
from process_apis.invoices.store import InvoiceStore
from process_apis.lineage.service import LineageService
from process_apis.partners import PartnerTenancy
from process_apis.period_figures import PeriodFigures
from process_apis.posting.backlog import PostingBacklog
from process_apis.posting.outbox import OutboxWorker, PostingPolicy
from process_apis.posting.payments import PaymentSync
from process_apis.posting.service import PostingService
from process_apis.receivables import Receivables
from process_apis.reconciliation import ReconciliationService
from process_apis.revenue.recognizer import RevenueRecognizer
from process_apis.revenue.service import RevenueService
from process_apis.usage.estimates import ChargeEstimates
from process_apis.usage.group_commit import GroupCommit, ThreadGroupCommit
from process_apis.usage.policy import EventTimePolicy
from process_apis.usage.service import EventSink, UsageService
from process_apis.usage.streams import RedisStreams, StreamConsumer, StreamSink
from process_apis.usage.summaries import UsageSummaries
from process_apis.usage.terms import TermsReader
from process_apis.usage.writer import prepare, write_batches
from process_apis.versions import DataVersions
from system_apis.billing.port import BillingPort
from system_apis.billing.reference import ReferenceBilling
from system_apis.crm.port import CrmPort
from system_apis.crm.reference import ReferenceCrm
from system_apis.erp.port import ErpPort
from system_apis.erp.reference import ReferenceErp
from system_apis.erp.reference.faults import ErpFaults, FaultyErp
from system_apis.tax.port import TaxPort
from system_apis.tax.reference import ReferenceTax

__all__ = [
    "INGEST_BACKBONES",
    "Container",
    "build_container",
    "build_stream_consumer",
    "check_ingest_backbone",
]

INGEST_BACKBONES = ("direct", "redis-streams")


class Container(msgspec.Struct, kw_only=True):
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    crm: CrmPort
    billing: BillingPort
    tax: TaxPort
    erp: ErpPort
    usage: UsageService
    group_commit: GroupCommit | ThreadGroupCommit
    idempotency: IdempotencyStore
    exceptions: ExceptionService
    invoices: InvoiceStore
    posting: PostingService
    outbox: OutboxWorker
    payments: PaymentSync
    billing_runs: BillingRunService
    reconciliation: ReconciliationService
    billing_runner: BillingRunner
    workbench: ExceptionWorkbench
    audit: AuditLog
    lifecycle: InvoiceLifecycle
    lineage: LineageService
    revenue: RevenueService
    revenue_recognizer: RevenueRecognizer
    portal: PortalService
    partner: PartnerService
    # Rendered Experience API views (in process, and in Redis when configured).
    view_cache: ViewCache
    finance: FinanceService
    clients: ClientRegistry
    keyring: KeyRing
    # None when tokens come from an external authorization server.
    token_issuer: TokenIssuer | None
    token_verifier: TokenVerifier
    key_source: KeySource
    rate_limits: RateLimits
    # Ingest backbone "redis-streams" only: the Redis clients, this process's sink and
    # its writer (started with the sink's first use).
    streams: RedisStreams | None = None
    stream_sink: StreamSink | None = None
    stream_consumer: StreamConsumer | None = None

    def dependencies(self) -> dict[str, Provide]:
        """Every service a route may ask for, by parameter name."""
        names = (
            "sessions",
            "crm",
            "billing",
            "tax",
            "erp",
            "usage",
            "idempotency",
            "exceptions",
            "invoices",
            "posting",
            "billing_runs",
            "reconciliation",
            "workbench",
            "lifecycle",
            "lineage",
            "revenue",
            "portal",
            "partner",
            "finance",
            "settings",
            "keyring",
            "token_issuer",
            "streams",
        )
        provided = {name: _constant(getattr(self, name)) for name in names}
        provided["max_batch_events"] = _constant(self.settings.max_batch_events)
        # Routes wake the background work only where this process does it.
        in_process = self.settings.worker_in_process
        provided["billing_runner"] = _constant(self.billing_runner if in_process else None)
        provided["caller"] = Provide(_caller, sync_to_thread=False)
        return provided

    def start_background_work(self) -> None:
        """Resume queued or abandoned runs and due postings (at startup, in-process)."""
        if self.settings.worker_in_process:
            self.billing_runner.kick()
            self.outbox.kick()

    async def aclose(self) -> None:
        await self.billing_runner.aclose()
        await self.outbox.aclose()
        # The sink first (its requests in flight are answered by the consumer), then
        # the consumer (it finishes the batches it holds), then their Redis clients.
        if self.stream_sink is not None:
            await self.stream_sink.aclose()
        if self.stream_consumer is not None:
            await self.stream_consumer.aclose()
        if self.streams is not None:
            await self.streams.aclose()
        await self.group_commit.aclose()
        await self.rate_limits.aclose()
        await self.view_cache.aclose()
        if isinstance(self.key_source, RemoteJwks):
            await self.key_source.aclose()
        await self.engine.dispose()


def _caller(request: Request) -> Caller | None:
    """The authenticated client (set by the gateway's authentication middleware)."""
    return request.scope.get("auth")


def _constant(value) -> Provide:
    def provide():
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def check_ingest_backbone(settings: Settings) -> None:
    """Refuses settings the ingest backbone cannot run with (at startup, not at the
    first request)."""
    if settings.ingest_backbone not in INGEST_BACKBONES:
        raise ValueError(
            f"METERLINE_INGEST_BACKBONE={settings.ingest_backbone!r}: choose one of "
            f"{', '.join(INGEST_BACKBONES)}"
        )
    if settings.ingest_backbone != "redis-streams":
        return
    if not settings.redis_url:
        raise ValueError(
            "METERLINE_INGEST_BACKBONE=redis-streams needs REDIS_URL: the ingest stream "
            "lives in Redis"
        )
    if not 0 < settings.ingest_reply_timeout_seconds <= settings.ingest_claim_timeout_seconds:
        raise ValueError(
            "METERLINE_INGEST_REPLY_TIMEOUT_SECONDS must be positive and at most "
            "METERLINE_INGEST_CLAIM_TIMEOUT_SECONDS (a batch taken over from a stopped "
            "writer must not answer a request that still waits)"
        )


def _ingest_writers(settings: Settings, engine: AsyncEngine) -> int:
    """Concurrent ingest transactions per process: one on SQLite (a single writer
    anyway), four on PostgreSQL, unless set."""
    return settings.ingest_writers or (1 if engine.dialect.name == "sqlite" else 4)


def build_group_commit(
    settings: Settings, engine: AsyncEngine, writers: int
) -> GroupCommit | ThreadGroupCommit:
    """Where ingest transactions run: a writer thread with its own synchronous SQLite
    connection, or writer tasks on the async engine on PostgreSQL."""
    if engine.dialect.name == "sqlite":
        writer = create_sqlite_writer(settings.database_url)
        return ThreadGroupCommit(writer, prepare("sqlite"), write_batches)
    return GroupCommit(engine, prepare("postgresql"), write_batches, writers=writers)


def build_stream_consumer(
    settings: Settings,
    streams: RedisStreams,
    store: GroupCommit | ThreadGroupCommit,
    writers: int,
) -> StreamConsumer:
    """A writer of the ingest stream (in a gateway process or ``meterline worker``),
    storing through ``store``, the process's group commit."""
    return StreamConsumer(
        streams,
        store,
        loops=writers,
        claim_timeout=settings.ingest_claim_timeout_seconds,
        reply_ttl=max(600.0, 4 * settings.ingest_reply_timeout_seconds),
    )


def build_container(settings: Settings) -> Container:
    check_ingest_backbone(settings)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    crm = ReferenceCrm(sessions)
    billing = ReferenceBilling(sessions)
    tax = ReferenceTax(sessions)
    erp: ErpPort = ReferenceErp(sessions)
    faults = ErpFaults.parse(settings.erp_faults)  # a bad value stops startup
    if faults.active:
        erp = FaultyErp(erp, faults)
    invoices = InvoiceStore(sessions)
    documents = DocumentQueries(sessions, invoices)
    # Who may see which customer and document: the portal and the Partner API alike.
    tenancy = PartnerTenancy(crm, invoices, documents)
    receivables = Receivables(sessions, invoices)
    terms = TermsReader(crm, billing)
    usage_summaries = UsageSummaries(sessions, billing)
    # The namespace hashes the source of every view module: only a shared tier needs it.
    view_redis = settings.redis_url if settings.experience_cache_redis else None
    view_cache = ViewCache.create(
        max_bytes=settings.experience_cache_bytes,
        ttl=settings.experience_cache_ttl_seconds,
        redis_url=view_redis,
        redis_prefix=settings.redis_key_prefix,
        namespace=view_namespace(settings.database_url) if view_redis else "",
    )
    posting = PostingService(sessions, erp, crm)
    exceptions = ExceptionService(sessions)
    payments = PaymentSync(sessions, erp)
    recognizer = RevenueRecognizer(sessions, erp, billing)
    outbox = OutboxWorker(
        posting,
        PostingPolicy(
            quota_per_second=settings.erp_quota_per_second,
            attempts=settings.erp_post_attempts,
            breaker_threshold=settings.erp_breaker_threshold,
            breaker_reset_seconds=settings.erp_breaker_reset_seconds,
        ),
        interval=settings.worker_interval_seconds,
        payments=payments,
        revenue=recognizer,
    )
    writers = _ingest_writers(settings, engine)
    group_commit = build_group_commit(settings, engine, writers)
    sink: EventSink = group_commit
    streams = stream_sink = stream_consumer = None
    if settings.ingest_backbone == "redis-streams":
        assert settings.redis_url is not None  # checked above
        streams = RedisStreams(settings.redis_url, prefix=settings.redis_key_prefix)
        stream_consumer = build_stream_consumer(settings, streams, group_commit, writers)
        sink = stream_sink = StreamSink(
            streams,
            reply_timeout=settings.ingest_reply_timeout_seconds,
            consumer=stream_consumer,
            max_backlog=settings.ingest_stream_max_batches,
        )
    policy = EventTimePolicy(
        max_age=timedelta(days=settings.event_max_age_days),
        max_future=timedelta(seconds=settings.event_max_future_seconds),
    )
    usage = UsageService(sink, crm, billing, exceptions, policy)
    billing_runs = BillingRunService(
        sessions,
        crm,
        billing,
        tax,
        erp,
        usage,
        lease=timedelta(seconds=settings.billing_run_lease_seconds),
        grace=timedelta(days=settings.billing_grace_days),
    )
    # Invoices written here are posted at once: by this process's outbox worker on the
    # embedded default (started if need be), else by a worker's, if one runs here.
    wake_outbox = outbox.kick if settings.worker_in_process else outbox.wake
    billing_runner = BillingRunner(
        billing_runs, interval=settings.worker_interval_seconds, after_run=wake_outbox
    )
    clients = ClientRegistry(sessions)
    token_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
    keyring = KeyRing(sessions, token_ttl=token_ttl)
    external = settings.oauth_external_issuer and settings.oauth_external_jwks_url
    if external:
        issuer = settings.oauth_external_issuer
        key_source: KeySource = RemoteJwks(
            settings.oauth_external_jwks_url, min_interval=settings.jwks_refresh_min_seconds
        )
        token_issuer = None
    else:
        issuer = settings.oauth_issuer.rstrip("/")
        key_source = LocalKeys(keyring)
        token_issuer = TokenIssuer(
            clients,
            keyring,
            issuer=issuer,
            audience=settings.oauth_audience,
            ttl=settings.access_token_ttl_seconds,
        )
    reconciliation = ReconciliationService(sessions, erp, billing, crm)
    lineage = LineageService(sessions, erp)
    workbench = ExceptionWorkbench(
        exceptions,
        posting,
        billing_runs,
        usage,
        recognizer,
        wake_outbox=wake_outbox,
        wake_runner=billing_runner.kick if settings.worker_in_process else lambda: None,
    )
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        crm=crm,
        billing=billing,
        tax=tax,
        erp=erp,
        usage=usage,
        group_commit=group_commit,
        idempotency=DatabaseIdempotencyStore(
            sessions, ttl=timedelta(hours=settings.idempotency_ttl_hours)
        ),
        exceptions=exceptions,
        invoices=invoices,
        posting=posting,
        outbox=outbox,
        payments=payments,
        billing_runs=billing_runs,
        reconciliation=reconciliation,
        billing_runner=billing_runner,
        audit=AuditLog(sessions),
        lineage=lineage,
        lifecycle=InvoiceLifecycle(sessions, wake_outbox=wake_outbox),
        workbench=workbench,
        revenue=RevenueService(sessions),
        revenue_recognizer=recognizer,
        portal=PortalService(
            tenancy=tenancy,
            invoices=invoices,
            documents=documents,
            receivables=receivables,
            lineage=lineage,
            terms=terms,
            usage=usage_summaries,
            estimates=ChargeEstimates(sessions, billing),
            versions=DataVersions(sessions),
            cache=view_cache,
        ),
        partner=PartnerService(tenancy, receivables, terms, usage_summaries),
        finance=FinanceService(
            exceptions,
            workbench,
            reconciliation,
            lineage,
            PeriodFigures(sessions),
            PostingBacklog(sessions),
        ),
        clients=clients,
        keyring=keyring,
        token_issuer=token_issuer,
        token_verifier=TokenVerifier(key_source, issuer=issuer, audience=settings.oauth_audience),
        key_source=key_source,
        rate_limits=build_rate_limits(settings),
        streams=streams,
        stream_sink=stream_sink,
        stream_consumer=stream_consumer,
        view_cache=view_cache,
    )
