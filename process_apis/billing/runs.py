"""Billing runs: for a calendar month (and optionally some customers), bill every active
subscription not billed yet (process_apis/billing/invoicing.py), a chunk at a time: the
chunk's usage is aggregated in SQL at once, each subscription is rated and taxed, and
their invoices are written in batches, many to a transaction.

A run is asynchronous and resumable. ``start`` records it ``queued``; a runner (the
``BillingRunner`` of a gateway or worker process, or the CLI inline) ``execute``s it
while holding a lease it renews between batches and extends through any pause a
subscription waits out (a system's Retry-After): a runner that hangs loses it, one that
waits does not. If the process dies, the lease runs out and another runner resumes
the run from the beginning: subscriptions it already billed are found
by their invoices (which carry the run id) and skipped, and the unique index on
invoices turns any write racing it into a no-op, so nothing is billed twice. A batch is
one transaction: a runner dying mid-batch leaves none of it, and the resumed run bills
those subscriptions again. Batches hold about a fiftieth of the run (1 to 200
subscriptions), so a small run still commits invoice by invoice and a large one pays a
transaction per 200. Progress is saved after the batch it counts is committed.
Re-running a period (a new run) bills only what no run has billed.

Posting is not part of the run: each invoice is written with its outbox row, and the
outbox worker posts it; the run's posted/pending/failed counts are read from the outbox.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation, errors
from canonical.ids import new_id
from canonical.model import Subscription
from canonical.time import Period, utcnow
from process_apis.audit import append
from process_apis.billing.corrections import Corrections
from process_apis.billing.drafts import DraftRefresher, finalize_due, grace_over, raise_leftovers
from process_apis.billing.invoicing import Draft, RunMasterData, SubscriptionBiller, Usage
from process_apis.billing.run_model import (
    BillingRun,
    Progress,
    RunCounts,
    RunStatus,
    outbox_counts,
    run_of,
)
from process_apis.exceptions.service import ExceptionService, raise_exception
from process_apis.paging import fetch_page
from process_apis.tables import billing_runs, invoices
from process_apis.usage.service import UsageService
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort
from system_apis.tax.port import TaxPort

__all__ = ["BillingRun", "BillingRunService", "RunCounts", "RunStatus"]

log = logging.getLogger("meterline.billing")

# Subscription ids per IN (...) lookup: well below every backend's bound-parameter limit.
_ID_CHUNK = 1000
# Progress is saved (and the lease renewed) after this many subscriptions or seconds.
_PROGRESS_EVERY = 200
_PROGRESS_SECONDS = 2.0
# Subscriptions whose usage is aggregated together (a few grouped queries per window and
# event type), and the most whose invoices share a transaction.
_CHUNK = 2000
_BATCH = 200

# Errors that hold one subscription (raised as an exception for finance) rather than
# stopping the run.
_HOLDS = (
    errors.UpstreamError,
    errors.BusinessRuleViolation,
    errors.NotFound,
    errors.InvalidRequest,
)


class _Run(msgspec.Struct, kw_only=True):
    """A run while it executes."""

    id: str
    owner: str  # the runner holding its lease
    period: Period
    subscriptions: list[Subscription]
    masters: RunMasterData
    billed: dict[str, str | None]  # subscription -> the run that billed it ("": unknown)
    held_before: set[str]  # billing_failed exceptions open when the run started
    late: set[str]  # customers with late usage for the period, corrected by memos
    drafted: set[str]  # subscriptions whose invoices are drafts (a grace window)
    finalize: bool  # the grace window is over: drafts are finalized
    progress: Progress
    batch: int  # subscriptions drafted concurrently and written in one transaction
    renew_every: timedelta
    saved_at: datetime
    saved_rated: int = 0


class BillingRunService:
    def __init__(
        self,
        sessions: async_sessionmaker,
        crm: CrmPort,
        billing: BillingPort,
        tax: TaxPort,
        erp: ErpPort,
        usage: UsageService,
        *,
        lease: timedelta = timedelta(seconds=60),
        grace: timedelta = timedelta(0),
    ) -> None:
        self._sessions = sessions
        self._crm = crm
        self._billing = billing
        self._erp = erp
        self._usage = usage
        self._biller = SubscriptionBiller(sessions, billing, tax, grace=grace)
        self._drafts = DraftRefresher(sessions)
        self.grace = grace
        self._exceptions = ExceptionService(sessions)
        self._corrections = Corrections(sessions, self._biller)
        self.lease = lease

    # -- reading -------------------------------------------------------------------------

    async def get(self, run_id: str) -> BillingRun:
        async with self._sessions() as session:
            row = (
                await session.execute(sa.select(billing_runs).where(billing_runs.c.id == run_id))
            ).first()
            if row is None:
                raise errors.NotFound(f"billing run {run_id} not found")
            outbox = await outbox_counts(session, [run_id])
        return run_of(row, outbox.get(run_id, {}))

    async def list(self, *, limit: int = 50, starting_after: str | None = None):
        async with self._sessions() as session:
            rows, has_more = await fetch_page(
                session, billing_runs, [], limit=limit, starting_after=starting_after
            )
            outbox = await outbox_counts(session, [r.id for r in rows])
        return [run_of(r, outbox.get(r.id, {})) for r in rows], has_more

    # -- starting and executing ------------------------------------------------------------

    async def start(self, period: Period, customer_ids: list[str] | None = None) -> BillingRun:
        """Record a queued run; a runner executes it."""
        run_id = new_id("run")
        async with self._sessions.begin() as session:
            await session.execute(
                billing_runs.insert().values(
                    id=run_id,
                    period=str(period),
                    status="queued",
                    customer_ids=customer_ids,
                    counts=Progress(),
                    correlation_id=correlation.current(),
                    created_at=utcnow(),
                )
            )
            await append(
                session,
                action="billing_run.started",
                subject_type="billing_run",
                subject_id=run_id,
                data={"period": str(period), "customer_ids": customer_ids},
            )
        return await self.get(run_id)

    async def start_finalizing(self) -> list[BillingRun]:
        """A run for each period whose grace window is over and still holds drafts."""
        if not self.grace:
            return []
        return [await self.start(p) for p in await finalize_due(self._sessions, self.grace)]

    async def run(self, period: Period, customer_ids: list[str] | None = None) -> BillingRun:
        """Start a run and execute it here, to the end (the CLI; tests)."""
        run = await self.start(period, customer_ids)
        await self.execute(run.id, owner=f"inline-{run.id}")
        return await self.get(run.id)

    async def claimable(self, limit: int = 10) -> list[str]:
        """Runs waiting for a runner: queued, or running under a lease that ran out."""
        now = utcnow()
        async with self._sessions() as session:
            found = await session.execute(
                sa.select(billing_runs.c.id)
                .where(
                    sa.or_(
                        billing_runs.c.status == "queued",
                        sa.and_(
                            billing_runs.c.status == "running",
                            sa.or_(
                                billing_runs.c.lease_until.is_(None),
                                billing_runs.c.lease_until < now,
                            ),
                        ),
                    )
                )
                .order_by(billing_runs.c.created_at, billing_runs.c.id)
                .limit(limit)
            )
            return list(found.scalars())

    async def execute(self, run_id: str, *, owner: str) -> bool:
        """Execute (or resume) a run if ``owner`` can take its lease; returns whether it
        did. Any error the run cannot hold on one subscription fails the run, with the
        error recorded; what it billed stays billed."""
        row = await self._claim(run_id, owner)
        if row is None:
            return False
        token = correlation.use(row.correlation_id or correlation.ensure())
        try:
            await self._execute(row, owner)
        except errors.MeterlineError as exc:
            await self._finish(run_id, owner, "failed", f"{exc.code}: {exc.detail}")
        except Exception as exc:  # recorded on the run, and logged with its traceback
            log.exception("billing run %s failed", run_id)
            await self._finish(run_id, owner, "failed", f"internal_error: {type(exc).__name__}")
        finally:
            correlation.reset(token)
        return True

    async def _execute(self, row, owner: str) -> None:
        run = await self._prepare(row, owner)
        subscriptions = run.subscriptions
        chunks = [subscriptions[i : i + _CHUNK] for i in range(0, len(subscriptions), _CHUNK)]
        usage = self._biller.usage_ahead(chunks, run.period, run.masters, set(run.billed))
        async with contextlib.aclosing(usage) as chunks_with_usage:
            async for chunk, quantities in chunks_with_usage:
                for i in range(0, len(chunk), run.batch):
                    await self._bill(run, chunk[i : i + run.batch], quantities)
                    if run.progress.rated - run.saved_rated >= _PROGRESS_EVERY or (
                        utcnow() - run.saved_at > run.renew_every
                    ):
                        await self._save(run.id, owner, run.progress)
                        run.saved_at, run.saved_rated = utcnow(), run.progress.rated
        await self._save(run.id, owner, run.progress)
        if run.finalize and row.customer_ids is None:
            # The period's drafts are final now: any left is no run's to finalize.
            async with self._sessions.begin() as session:
                await raise_leftovers(session, run.period)
        await self._finish(run.id, owner, "completed", None)

    async def _prepare(self, row, owner: str) -> _Run:
        """The run's scope and what it reads once: subscriptions, master data, what is
        billed already and which subscriptions are held."""
        period = Period.parse(row.period)
        await self._usage.rematch()
        subscriptions = await self._crm.subscriptions_active_between(
            period.first_day, period.end.date(), row.customer_ids
        )
        masters = RunMasterData(
            self._crm, self._billing, self._erp, await self._billing.list_meters()
        )
        if row.customer_ids is None:
            await masters.load_customers({s.customer_id for s in subscriptions})
        billed, drafted = await self._billed_subscriptions([s.id for s in subscriptions], period)
        progress = Progress(
            subscriptions=len(subscriptions),
            invoiced=await self._invoiced_by(row.id),
        )
        return _Run(
            id=row.id,
            owner=owner,
            period=period,
            subscriptions=subscriptions,
            masters=masters,
            billed=billed,
            drafted=drafted,
            finalize=not self.grace or grace_over(period, self.grace),
            held_before=await self._exceptions.open_subjects("billing_failed"),
            late=await self._corrections.pending(period),
            progress=progress,
            batch=max(1, min(_BATCH, len(subscriptions) // 50)),
            # Renewed well before it runs out, so that a live runner is never taken over.
            renew_every=min(timedelta(seconds=_PROGRESS_SECONDS), self.lease / 3),
            saved_at=utcnow(),
        )

    async def _bill(self, run: _Run, batch: list[Subscription], usage: Usage) -> None:
        """Draft a batch's subscriptions (concurrently), hold those that cannot be
        billed, and write the others' invoices in one transaction."""
        todo = [s for s in batch if s.id not in run.billed]
        drafted = await self._biller.draft_many(
            run.id,
            todo,
            run.period,
            run.masters,
            usage,
            before_pause=functools.partial(self._extend_lease, run.id, run.owner),
        )
        pending: list[tuple[Subscription, list[Draft]]] = []
        for subscription in batch:
            run.progress.rated += 1
            by = run.billed.get(subscription.id)
            if by == run.id:
                pass  # billed by this run before it was resumed: counted at the start
            elif by is not None and subscription.customer_id in run.late:
                await self._correct(run, subscription)
            elif by is not None:
                run.progress.skipped += 1
            elif isinstance(outcome := drafted[subscription.id], _HOLDS):
                run.progress.held += 1
                await self._hold(subscription, run.period, outcome)
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                pending.append((subscription, outcome))
        if not pending:
            return
        # Held by an earlier run: billed now, refreshed, or found to have nothing to bill.
        holds = {f"{s.id}:{run.period}" for s, _ in pending} & run.held_before
        # Per subscription: documents already updated (a refreshed draft), and the drafts
        # left to write (a new subscription's, or a currency its drafts lacked).
        outcomes: list[tuple[int, list[Draft]]] = []
        for subscription, drafts in pending:
            if subscription.id in run.drafted:
                # A draft in its grace window, re-rated with the events since (or finalized).
                outcomes.append(
                    await self._drafts.refresh(subscription.id, run.period, drafts, run.finalize)
                )
            else:
                outcomes.append((0, drafts))
        with_drafts = [drafts for _, drafts in outcomes if drafts]
        created = iter(await self._biller.write(with_drafts) if with_drafts else [])
        for changed, drafts in outcomes:
            count = changed + (next(created) if drafts else 0)  # no drafts: nothing to bill
            run.progress.invoiced += count
            run.progress.skipped += 0 if count else 1
        if holds:
            await self._exceptions.resolve_subjects("billing_failed", holds)

    async def _correct(self, run: _Run, subscription: Subscription) -> None:
        """Memos for the late usage of a subscription already invoiced for the period."""
        try:
            memos = await self._corrections.correct(run.id, subscription, run.period, run.masters)
        except _HOLDS as exc:
            run.progress.held += 1
            await self._hold(subscription, run.period, exc)
            return
        run.progress.corrected += len(memos)
        run.progress.skipped += 0 if memos else 1
        # Held by an earlier run: corrected now.
        hold = f"{subscription.id}:{run.period}"
        if hold in run.held_before:
            await self._exceptions.resolve_subjects("billing_failed", {hold})

    async def _invoiced_by(self, run_id: str) -> int:
        """Invoices the run wrote before it was resumed (one per currency of each
        subscription, so not the subscriptions counted)."""
        async with self._sessions() as session:
            return (
                await session.execute(
                    sa.select(sa.func.count()).where(
                        invoices.c.run_id == run_id, invoices.c.kind == "invoice"
                    )
                )
            ).scalar_one()

    async def _claim(self, run_id: str, owner: str):
        now = utcnow()
        async with self._sessions.begin() as session:
            claimed = await session.execute(
                sa.update(billing_runs)
                .where(
                    billing_runs.c.id == run_id,
                    billing_runs.c.status.in_(("queued", "running")),
                    sa.or_(
                        billing_runs.c.lease_until.is_(None),
                        billing_runs.c.lease_until < now,
                        billing_runs.c.lease_owner == owner,
                    ),
                )
                .values(status="running", lease_owner=owner, lease_until=now + self.lease)
            )
            if claimed.rowcount != 1:
                return None
            return (
                await session.execute(sa.select(billing_runs).where(billing_runs.c.id == run_id))
            ).one()

    async def release(self, owner: str) -> None:
        """Give up ``owner``'s leases (a runner stopping): the runs are resumed at once."""
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(billing_runs)
                .where(billing_runs.c.lease_owner == owner, billing_runs.c.status == "running")
                .values(lease_owner=None, lease_until=None)
            )

    async def _extend_lease(self, run_id: str, owner: str, pause: float) -> None:
        """Keep the lease through a pause a subscription waits out (a system's
        Retry-After, a backoff), however long: the runner is alive and waiting, not
        stalled, so it must not be taken over. Nothing if the lease is gone already
        (the next save stops the run)."""
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(billing_runs)
                .where(billing_runs.c.id == run_id, billing_runs.c.lease_owner == owner)
                .values(lease_until=utcnow() + timedelta(seconds=pause) + self.lease)
            )

    async def _save(self, run_id: str, owner: str, progress: Progress) -> None:
        """Store progress and renew the lease; a runner that lost its lease (it stalled
        past it and another took over) stops."""
        async with self._sessions.begin() as session:
            saved = await session.execute(
                sa.update(billing_runs)
                .where(billing_runs.c.id == run_id, billing_runs.c.lease_owner == owner)
                .values(counts=progress, lease_until=utcnow() + self.lease)
            )
        if saved.rowcount != 1:
            raise errors.Conflict(f"billing run {run_id} was taken over by another runner")

    async def _finish(self, run_id: str, owner: str, status: RunStatus, error: str | None):
        async with self._sessions.begin() as session:
            finished = await session.execute(
                sa.update(billing_runs)
                .where(billing_runs.c.id == run_id, billing_runs.c.lease_owner == owner)
                .values(
                    status=status,
                    error=error[:1000] if error else None,
                    completed_at=utcnow(),
                    lease_owner=None,
                    lease_until=None,
                )
            )
            if finished.rowcount != 1:  # another runner holds the run now
                return
            await append(
                session,
                action=f"billing_run.{status}",
                subject_type="billing_run",
                subject_id=run_id,
                data={"error": error} if error else None,
            )

    async def _hold(self, subscription: Subscription, period: Period, exc: errors.MeterlineError):
        log.warning("billing of %s for %s held: %s", subscription.id, period, exc.detail)
        async with self._sessions.begin() as session:
            await raise_exception(
                session,
                "billing_failed",
                f"{subscription.id}:{period}",
                exc.detail,
                {
                    "subscription_id": subscription.id,
                    "customer_id": subscription.customer_id,
                    "period": str(period),
                    "error_code": exc.code,
                },
            )

    async def _billed_subscriptions(
        self, subscription_ids: list[str], period: Period
    ) -> tuple[dict[str, str | None], set[str]]:
        """Which of the subscriptions already have an invoice for ``period``, and the run
        that wrote it, and which have drafts instead: one query per chunk of ids (by the
        unique index)."""
        billed: dict[str, str | None] = {}
        drafted: set[str] = set()
        async with self._sessions() as session:
            for i in range(0, len(subscription_ids), _ID_CHUNK):
                found = await session.execute(
                    sa.select(
                        invoices.c.subscription_id, invoices.c.run_id, invoices.c.status
                    ).where(
                        invoices.c.subscription_id.in_(subscription_ids[i : i + _ID_CHUNK]),
                        invoices.c.period_start == period.first_day,
                        invoices.c.kind == "invoice",
                    )
                )
                for sub, run, status in found:
                    if status == "draft":
                        drafted.add(sub)
                    else:
                        billed[sub] = run or ""
        # A subscription with a finalized invoice in one currency and a draft in another
        # is billed: its drafts are finalized by hand.
        return billed, drafted - billed.keys()
