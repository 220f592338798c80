"""Recognising revenue: schedules for posted documents, journals for their due entries,
and those journals booked in the ERP.

Three steps, each safe to repeat and to run in several workers at once:

1. ``schedule``: a document posted to the ERP gets one schedule per line (none twice:
   the document's schedules are written in one transaction, found by the next pass).
2. ``book``: the entries due by a date are summed per legal entity, currency, date and
   item into journals; the schedules' ``booked_through`` moves in the same transaction,
   guarded by its old value, so two workers never book an entry twice.
3. ``post``: pending journals are sent to the ERP, idempotent by their id
   (``external_ref``): a lost answer is found by lookup before sending again. A refusal
   (a closed period) fails the journal with a ``revenue_posting_failed`` exception.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation, errors
from canonical.ids import new_id
from canonical.model import Meter, RevenueJournal, RevenueJournalLine
from canonical.time import utcnow
from process_apis.billing.aggregation import quantity_of
from process_apis.exceptions.service import raise_exception, resolve_exceptions
from process_apis.posting.service import posting_date
from process_apis.retries import transient_retrying
from process_apis.revenue.schedule import Plan, entries
from process_apis.revenue.table import revenue_journals, revenue_schedules
from process_apis.tables import invoice_lines, invoices, postings, usage_events
from system_apis.billing.port import BillingPort
from system_apis.erp.port import ErpPort

__all__ = ["FAILED_KIND", "RevenueRecognizer", "plan_of"]

log = logging.getLogger("meterline.revenue")

FAILED_KIND = "revenue_posting_failed"
# Documents scheduled, schedules booked and journals posted per transaction or pass.
BATCH = 200
# Aggregations whose daily quantities add up to the line's: usage recognised by them.
ADDITIVE = ("sum", "count")

T = TypeVar("T")
# Wraps each ERP call (the outbox's throttle and circuit breaker); default: call it.
Guard = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


async def _unguarded(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


def plan_of(row: Any) -> Plan:
    weights = row.weights
    return Plan(
        currency=row.currency,
        amount=row.amount,
        service_start=row.service_start,
        service_end=row.service_end,
        posting_date=row.posting_date,
        weights=None if weights is None else [Decimal(w) for w in weights],
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


class RevenueRecognizer:
    def __init__(
        self,
        sessions: async_sessionmaker,
        erp: ErpPort,
        billing: BillingPort,
    ) -> None:
        self._sessions = sessions
        self._erp = erp
        self._billing = billing

    async def recognise(self, through: date, guard: Guard | None = None) -> dict[str, int]:
        """All three steps for the entries due by ``through`` (inclusive); ``guard`` wraps
        each ERP call (the outbox passes its throttle and circuit breaker)."""
        scheduled = await self.schedule()
        booked = await self.book(through)
        posted, failed = await self.post(guard)
        return {"scheduled": scheduled, "journals": booked, "posted": posted, "failed": failed}

    # -- 1. schedules ---------------------------------------------------------------------

    async def schedule(self) -> int:
        """Schedules for every posted document that has none; how many documents."""
        meters: dict[str, Meter] | None = None
        seen: set[str] = set()
        done = 0
        while True:
            async with self._sessions() as session:
                unscheduled = sa.select(revenue_schedules.c.id).where(
                    revenue_schedules.c.document_id == invoices.c.id
                )
                rows = (
                    await session.execute(
                        sa.select(invoices)
                        .join(postings, postings.c.invoice_id == invoices.c.id)
                        .where(postings.c.status == "posted", ~sa.exists(unscheduled))
                        .order_by(invoices.c.id)
                        .limit(BATCH)
                    )
                ).all()
            if not rows:
                return done
            if meters is None:
                meters = {m.code: m for m in await self._billing.list_meters()}
            if all(document.id in seen for document in rows):
                return done  # documents without lines: nothing to schedule
            for document in rows:
                seen.add(document.id)
                async with self._sessions.begin() as session:
                    if await session.scalar(
                        sa.select(sa.func.count()).where(
                            revenue_schedules.c.document_id == document.id
                        )
                    ):
                        continue  # another worker was first
                    schedules = await self._schedules(session, document, meters)
                    if schedules:
                        await session.execute(sa.insert(revenue_schedules), schedules)
                done += 1

    async def _schedules(
        self, session: AsyncSession, document: Any, meters: dict[str, Meter]
    ) -> list[dict]:
        lines = (
            await session.execute(
                sa.select(invoice_lines)
                .where(invoice_lines.c.invoice_id == document.id)
                .order_by(invoice_lines.c.position)
            )
        ).all()
        booked_on = (
            posting_date(document.period_end)
            if document.kind == "invoice"
            else document.created_at.date()
        )
        sign = -1 if document.kind == "credit_memo" else 1
        out = []
        for line in lines:
            start = line.service_start or document.period_start
            end = line.service_end or document.period_end
            weights = None
            if line.kind == "usage" and line.event_type:
                weights = await self._daily(session, document, line, start, end, meters)
            plan = Plan(
                currency=document.currency,
                amount=sign * line.amount,
                service_start=start,
                service_end=end,
                posting_date=booked_on,
                weights=weights,
            )
            planned = entries(plan)
            out.append(
                {
                    "id": new_id("rvs"),
                    "document_id": document.id,
                    "line_id": line.id,
                    "legal_entity_id": document.legal_entity_id,
                    "currency": document.currency,
                    "item_code": line.item_code,
                    "method": "ratable" if weights is None else "consumption",
                    "service_start": start,
                    "service_end": end,
                    "amount": plan.amount,
                    "weights": None if weights is None else [str(w) for w in weights],
                    "posting_date": booked_on,
                    "last_entry_on": planned[-1].on if planned else booked_on,
                    # Nothing to book (it nets to zero): booked already.
                    "booked_through": None if planned else booked_on + timedelta(days=1),
                    "correlation_id": document.correlation_id,
                    "created_at": utcnow(),
                }
            )
        return out

    async def _daily(
        self,
        session: AsyncSession,
        document: Any,
        line: Any,
        start: date,
        end: date,
        meters: dict[str, Meter],
    ) -> list[Decimal]:
        """The line's quantity per service day: the events it billed (an invoice's on-time
        events, a memo's late ones), aggregated day by day as the meter aggregates. A meter
        that does not add up by day (max, unique_count, latest) is weighted by events."""
        rows = (
            await session.execute(
                sa.select(usage_events.c.timestamp, usage_events.c.properties).where(
                    usage_events.c.customer_id == document.customer_id,
                    usage_events.c.event_type == line.event_type,
                    usage_events.c.timestamp >= _midnight(start),
                    usage_events.c.timestamp < _midnight(end),
                    usage_events.c.matched == 1,
                    usage_events.c.adjustment == 0
                    if document.kind == "invoice"
                    else usage_events.c.corrected_by == document.id,
                )
            )
        ).all()
        by_day: dict[date, list[Any]] = defaultdict(list)
        for row in rows:
            by_day[row.timestamp.astimezone(UTC).date()].append(row)
        meter = meters.get(line.meter_code or "")
        days = [start + timedelta(days=k) for k in range(max(1, (end - start).days))]
        if meter is None or meter.aggregation not in ADDITIVE:
            return [Decimal(len(by_day[day])) for day in days]
        return [quantity_of(meter, by_day[day]) for day in days]

    # -- 2. journals ----------------------------------------------------------------------

    async def book(self, through: date) -> int:
        """Journals for the entries due by ``through``; how many journals were written.
        Every schedule read is booked through that date (entries after it wait)."""
        written = 0
        while True:
            async with self._sessions.begin() as session:
                due = (
                    await session.execute(
                        sa.select(revenue_schedules)
                        .where(
                            sa.or_(
                                # The first entry is on the posting date or a service day.
                                sa.and_(
                                    revenue_schedules.c.booked_through.is_(None),
                                    sa.or_(
                                        revenue_schedules.c.posting_date <= through,
                                        revenue_schedules.c.service_start <= through,
                                    ),
                                ),
                                sa.and_(
                                    revenue_schedules.c.booked_through
                                    <= revenue_schedules.c.last_entry_on,
                                    revenue_schedules.c.booked_through <= through,
                                ),
                            )
                        )
                        .order_by(revenue_schedules.c.id)
                        .limit(BATCH)
                    )
                ).all()
                if not due:
                    return written
                written += await self._book(session, due, through)

    async def _book(self, session: AsyncSession, due: list[Any], through: date) -> int:
        totals: dict[tuple[str, str, date], dict[str, Decimal]] = defaultdict(
            lambda: defaultdict(Decimal)
        )
        for row in due:
            for entry in entries(plan_of(row)):
                if _unbooked(row, entry.on) and entry.on <= through:
                    totals[row.legal_entity_id, row.currency, entry.on][row.item_code] += (
                        entry.amount
                    )
            moved = await session.execute(
                sa.update(revenue_schedules)
                .where(
                    revenue_schedules.c.id == row.id,
                    revenue_schedules.c.booked_through.is_(None)
                    if row.booked_through is None
                    else revenue_schedules.c.booked_through == row.booked_through,
                )
                .values(booked_through=through + timedelta(days=1))
            )
            if moved.rowcount != 1:  # another worker booked it meanwhile: start again
                raise errors.Conflict("revenue schedule booked concurrently", code="conflict")
        journals = [
            {
                "id": new_id("rvj"),
                "legal_entity_id": entity,
                "currency": currency,
                "posting_date": on,
                "lines": [
                    {"item_code": item, "amount": str(amount)}
                    for item, amount in sorted(items.items())
                    if amount != 0
                ],
                "status": "pending",
                "attempts": 0,
                "correlation_id": correlation.current(),
                "created_at": utcnow(),
            }
            for (entity, currency, on), items in sorted(totals.items())
            if any(amount != 0 for amount in items.values())
        ]
        if journals:
            await session.execute(sa.insert(revenue_journals), journals)
        return len(journals)

    # -- 3. posting -----------------------------------------------------------------------

    async def post(self, guard: Guard | None = None) -> tuple[int, int]:
        """Send the pending journals, oldest date first; (posted, failed)."""
        guard = guard or _unguarded
        async with self._sessions() as session:
            pending = (
                await session.execute(
                    sa.select(revenue_journals)
                    .where(revenue_journals.c.status == "pending")
                    .order_by(revenue_journals.c.posting_date, revenue_journals.c.id)
                    .limit(BATCH)
                )
            ).all()
        posted = failed = 0
        for row in pending:
            journal = RevenueJournal(
                external_ref=row.id,
                legal_entity_id=row.legal_entity_id,
                currency=row.currency,
                posting_date=row.posting_date,
                description=f"Revenue recognised on {row.posting_date.isoformat()}",
                lines=[
                    RevenueJournalLine(item_code=line["item_code"], amount=Decimal(line["amount"]))
                    for line in row.lines
                ],
                correlation_id=row.correlation_id,
            )
            try:
                async for attempt in transient_retrying(attempts=3):
                    with attempt:
                        booked = await guard(functools.partial(self._send, journal))
            except errors.UpstreamError as exc:
                if exc.transient:  # the next round tries again
                    await self._note(row.id, exc, status="pending")
                    continue
                await self._fail(row, exc)
                failed += 1
                continue
            except (errors.BusinessRuleViolation, errors.InvalidRequest, errors.NotFound) as exc:
                await self._fail(row, exc)
                failed += 1
                continue
            async with self._sessions.begin() as session:
                await session.execute(
                    sa.update(revenue_journals)
                    .where(revenue_journals.c.id == row.id)
                    .values(
                        status="posted",
                        erp_journal_id=booked.id,
                        attempts=revenue_journals.c.attempts + 1,
                        last_error=None,
                        posted_at=utcnow(),
                    )
                )
                await resolve_exceptions(session, FAILED_KIND, {row.id})
            posted += 1
        return posted, failed

    async def _send(self, journal: RevenueJournal):
        # A journal whose answer was lost is there already: never book it twice.
        found = await self._erp.find_revenue_journal(journal.external_ref)
        return found or await self._erp.post_revenue_journal(journal)

    async def _note(self, journal_id: str, exc: errors.MeterlineError, *, status: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(revenue_journals)
                .where(revenue_journals.c.id == journal_id)
                .values(
                    status=status,
                    attempts=revenue_journals.c.attempts + 1,
                    last_error=f"{exc.code}: {exc.detail}"[:1000],
                )
            )

    async def _fail(self, row: Any, exc: errors.MeterlineError) -> None:
        log.warning("revenue journal %s refused: %s", row.id, exc.detail)
        await self._note(row.id, exc, status="failed")
        async with self._sessions.begin() as session:
            await raise_exception(
                session,
                FAILED_KIND,
                row.id,
                exc.detail,
                {
                    "journal_id": row.id,
                    "legal_entity_id": row.legal_entity_id,
                    "currency": row.currency,
                    "posting_date": row.posting_date.isoformat(),
                    "error_code": exc.code,
                },
            )

    async def requeue(self, journal_id: str) -> bool:
        """A failed journal is sent again (finance reopened the period, say)."""
        async with self._sessions.begin() as session:
            moved = await session.execute(
                sa.update(revenue_journals)
                .where(revenue_journals.c.id == journal_id, revenue_journals.c.status == "failed")
                .values(status="pending")
            )
        return moved.rowcount == 1


def _unbooked(row: Any, on: date) -> bool:
    return row.booked_through is None or on >= row.booked_through
