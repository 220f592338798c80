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
from canonical.persistence import create_engine, session_factory
from experience_apis.portal.service import PortalService
from gateway.auth.clients import ClientRegistry
from gateway.auth.keys import KeyRing
from gateway.auth.server import TokenIssuer
from gateway.auth.tokens import KeySource, LocalKeys, RemoteJwks, TokenVerifier
from gateway.rate_limit import RateLimits, build_rate_limits
from gateway.settings import Settings
from process_apis.billing.runs import BillingRunService
from process_apis.customers import CustomerDirectory
from process_apis.exceptions.service import ExceptionService
from process_apis.idempotency import DatabaseIdempotencyStore, IdempotencyStore
from process_apis.invoices.store import InvoiceStore
from process_apis.posting.service import PostingService
from process_apis.usage.group_commit import GroupCommit
from process_apis.usage.policy import EventTimePolicy
from process_apis.usage.service import UsageService
from process_apis.usage.writer import write_batches
from system_apis.billing.port import BillingPort
from system_apis.billing.reference import ReferenceBilling
from system_apis.crm.port import CrmPort
from system_apis.crm.reference import ReferenceCrm
from system_apis.erp.port import ErpPort
from system_apis.erp.reference import ReferenceErp
from system_apis.tax.port import TaxPort
from system_apis.tax.reference import ReferenceTax

__all__ = ["Container", "build_container"]


class Container(msgspec.Struct, kw_only=True):
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    crm: CrmPort
    billing: BillingPort
    tax: TaxPort
    erp: ErpPort
    usage: UsageService
    group_commit: GroupCommit
    idempotency: IdempotencyStore
    exceptions: ExceptionService
    invoices: InvoiceStore
    posting: PostingService
    billing_runs: BillingRunService
    portal: PortalService
    clients: ClientRegistry
    keyring: KeyRing
    # None when tokens come from an external authorization server.
    token_issuer: TokenIssuer | None
    token_verifier: TokenVerifier
    key_source: KeySource
    rate_limits: RateLimits

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
            "portal",
            "settings",
            "keyring",
            "token_issuer",
        )
        provided = {name: _constant(getattr(self, name)) for name in names}
        provided["max_batch_events"] = _constant(self.settings.max_batch_events)
        provided["caller"] = Provide(_caller, sync_to_thread=False)
        return provided

    async def aclose(self) -> None:
        await self.group_commit.aclose()
        await self.rate_limits.aclose()
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


def build_container(settings: Settings) -> Container:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    crm = ReferenceCrm(sessions)
    billing = ReferenceBilling(sessions)
    tax = ReferenceTax(sessions)
    erp = ReferenceErp(sessions)
    invoices = InvoiceStore(sessions)
    posting = PostingService(sessions, erp, crm)
    exceptions = ExceptionService(sessions)
    writers = settings.ingest_writers or (1 if engine.dialect.name == "sqlite" else 4)
    group_commit = GroupCommit(sessions, write_batches, writers=writers)
    policy = EventTimePolicy(
        max_age=timedelta(days=settings.event_max_age_days),
        max_future=timedelta(seconds=settings.event_max_future_seconds),
    )
    usage = UsageService(group_commit, crm, billing, exceptions, policy)
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
        billing_runs=BillingRunService(sessions, crm, billing, tax, erp, posting, usage),
        portal=PortalService(invoices, CustomerDirectory(crm)),
        clients=clients,
        keyring=keyring,
        token_issuer=token_issuer,
        token_verifier=TokenVerifier(key_source, issuer=issuer, audience=settings.oauth_audience),
        key_source=key_source,
        rate_limits=build_rate_limits(settings),
    )
