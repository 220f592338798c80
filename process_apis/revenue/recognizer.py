"""Recognising revenue: schedules for posted documents, journals for their due entries,
and those journals booked in the ERP.

Three steps, each safe to repeat and to run in several workers at once:

1. ``schedule``: a document posted to the ERP gets one schedule per line (none twice:
   the schedules of a document are written in one transaction, unique per line).
2. ``book``: the entries due by a date are summed per legal entity, currency, date and
   item into journals; the schedules' ``booked_through`` moves in the same transaction,
   guarded by its old value, so two workers never book an entry twice.
3. ``post``: pending journals are sent to the ERP, idempotent by their id
   (``external_ref``): sent again, a journal the ERP booked already (its answer lost) is
   answered with the one it holds, so no lookup comes first. A refusal (a closed period)
   fails the journal with a ``revenue_posting_failed`` exception.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying

from canonical import correlation, errors
from canonical.ids import new_id
from canonical.model import Meter, RevenueJournal, RevenueJournalLine
from canonical.time import midnight, utcnow
from process_apis.billing.aggregation import billed_events, quantity_of
from process_apis.exceptions.service import raise_exception, resolve_exceptions
from process_apis.invoices.counting import direction
from process_apis.invoices.reversals import reversed_invoice
from process_apis.posting.cursors import move_cursor, read_cursor
from process_apis.posting.service import booking_date
from process_apis.retries import transient_retrying
from process_apis.revenue.schedule import Plan, entries, service_days
from process_apis.revenue.table import revenue_journals, revenue_schedules
from process_apis.tables import invoice_lines, invoices, usage_events
from system_apis.billing.port import BillingPort
from system_apis.erp.port import ErpPort

__all__ = ["FAILED_KIND", "RevenueRecognizer", "plan_of"]

log = logging.getLogger("meterline.revenue")

FAILED_KIND = "revenue_posting_failed"
# Documents scheduled, schedules booked and journals posted per transaction or pass.
BATCH = 200
# Aggregations whose daily quantities add up to the line's: usage recognised by them.
ADDITIVE = ("sum", "count")
# Where ``schedule`` resumes (in ``sync_cursors``): the last ``posted_at`` it read, less
# an overlap for a posting stamped before, but committed after, a later one.
CURSOR = "revenue_schedules"
# ``booked_through`` of a schedule booked whole: out of every later pass's reach (by the
# index), whatever date it runs to.
DONE = date.max
CURSOR_OVERLAP = timedelta(hours=1)

T = TypeVar("T")
# Wraps each ERP call (the outbox's throttle and circuit breaker); default: call it.
Guard = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]
# The retries of one journal's post (the outbox's posting policy); default: a few quick
# ones, and a longer pause asked for leaves the journal to the next pass.
Retrying = Callable[[], AsyncRetrying]


def _retrying() -> AsyncRetrying:
    return transient_retrying(attempts=3, max_wait=10.0)


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

    async def recognise(
        self, through: date, guard: Guard | None = None, retrying: Retrying | None = None
    ) -> dict[str, int]:
        """All three steps for the entries due by ``through`` (inclusive); ``guard`` wraps
        each ERP call and ``retrying`` retries it (the outbox passes its throttle, circuit
        breaker and posting policy)."""
        scheduled = await self.schedule()
        booked = await self.book(through)
        posted, failed = await self.post(guard, retrying)
        return {"scheduled": scheduled, "journals": booked, "posted": posted, "failed": failed}

    # -- 1. schedules ---------------------------------------------------------------------

    async def schedule(self) -> int:
        """Schedules for every posted document that has none; how many documents.

        Documents are found by ``posted_at`` (indexed) from a cursor kept in
        ``sync_cursors``, less an overlap for postings that committed late, so a pass
        reads what was posted since the last one, not the whole history."""
        meters: dict[str, Meter] | None = None
        seen: set[str] = set()
        done = 0
        while True:
            async with self._sessions() as session:
                since = await _cursor(session)
                unscheduled = sa.select(revenue_schedules.c.id).where(
                    revenue_schedules.c.document_id == invoices.c.id
                )
                query = (
                    sa.select(invoices)
                    .where(invoices.c.posted_at.is_not(None), ~sa.exists(unscheduled))
                    .order_by(invoices.c.posted_at, invoices.c.id)
                    .limit(BATCH)
                )
                if since is not None:
                    query = query.where(invoices.c.posted_at >= since - CURSOR_OVERLAP)
                rows = [r for r in (await session.execute(query)).all() if r.id not in seen]
                if not rows:
                    return done  # (documents without lines are seen, never scheduled)
                lines = await _lines_of(session, [r.id for r in rows])
            if meters is None:
                meters = {m.code: m for m in await self._billing.list_meters()}
            for document in rows:
                seen.add(document.id)
                try:
                    async with self._sessions.begin() as session:
                        schedules = await self._schedules(
                            session, document, lines.get(document.id, []), meters
                        )
                        if schedules:
                            await session.execute(sa.insert(revenue_schedules), schedules)
                except IntegrityError:
                    continue  # another worker scheduled it (one schedule per line)
                done += 1
            async with self._sessions.begin() as session:
                await _advance(session, max(r.posted_at for r in rows))

    async def _schedules(
        self, session: AsyncSession, document: Any, lines: list[Any], meters: dict[str, Meter]
    ) -> list[dict]:
        booked_on = booking_date(document.kind, document.period_end, document.created_at)
        sign = direction(document.kind)
        # A void's credit memo consumes as its invoice did, day by day, so that the two
        # net on every day, not only in total.
        billing = await reversed_invoice(session, document) or document
        out = []
        for line in lines:
            start = line.service_start or document.period_start
            end = line.service_end or document.period_end
            weights = None
            if line.kind == "usage" and line.event_type:
                weights = await self._daily(session, document, billing, line, start, end, meters)
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
                    "booked_through": None if planned else DONE,
                    "correlation_id": document.correlation_id,
                    "created_at": utcnow(),
                }
            )
        return out

    async def _daily(
        self,
        session: AsyncSession,
        document: Any,
        billing: Any,
        line: Any,
        start: date,
        end: date,
        meters: dict[str, Meter],
    ) -> list[Decimal]:
        """The line's quantity per service day: the events it billed (an invoice's on-time
        events, a memo's late ones; ``billing``: the document whose events those are, the
        voided invoice for its reversal), aggregated day by day as the meter aggregates. A
        meter that does not add up by day (max, unique_count, latest) is weighted by events."""
        rows = (
            await session.execute(
                sa.select(usage_events.c.timestamp, usage_events.c.properties).where(
                    billed_events(
                        document.customer_id,
                        line.event_type,
                        midnight(start),
                        midnight(end),
                        billing.kind,
                        billing.id,
                        billing.voided_at,
                    )
                )
            )
        ).all()
        by_day: dict[date, list[Any]] = defaultdict(list)
        for row in rows:
            by_day[row.timestamp.date()].append(row)
        meter = meters.get(line.meter_code or "")
        days = service_days(start, end)
        if meter is None or meter.aggregation not in ADDITIVE:
            return [Decimal(len(by_day[day])) for day in days]
        return [quantity_of(meter, by_day[day]) for day in days]

    # -- 2. journals ----------------------------------------------------------------------

    async def book(self, through: date) -> int:
        """Journals for the entries due by ``through``; how many journals were written.
        Every schedule read is booked through that date (entries after it wait). Meeting
        a schedule another worker is booking, the batch is rolled back and this pass ends:
        that worker books it."""
        written = 0
        while True:
            try:
                async with self._sessions.begin() as session:
                    due = (await session.execute(_due(through))).all()
                    if not due:
                        return written
                    written += await self._book(session, due, through)
            except _BookedElsewhere:
                return written

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
                .values(
                    booked_through=DONE
                    if through >= row.last_entry_on
                    else through + timedelta(days=1)
                )
            )
            if moved.rowcount != 1:  # another worker booked it meanwhile
                raise _BookedElsewhere()
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

    async def post(
        self, guard: Guard | None = None, retrying: Retrying | None = None
    ) -> tuple[int, int]:
        """Send the pending journals, oldest date first; (posted, failed). A journal still
        failing after ``retrying``, or whose retry would wait longer than it allows, stays
        pending for the next pass."""
        guard = guard or _unguarded
        retrying = retrying or _retrying
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
            send = functools.partial(self._erp.post_revenue_journal, journal)
            try:
                async for attempt in retrying():
                    with attempt:
                        booked = await guard(send)
            except errors.UpstreamError as exc:
                if exc.transient:  # the next round tries again
                    async with self._sessions.begin() as session:
                        await self._note(session, row.id, exc, status="pending")
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

    async def _note(
        self, session: AsyncSession, journal_id: str, exc: errors.MeterlineError, *, status: str
    ) -> None:
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
        """The ERP refused the journal for good: it fails, and finance gets an exception
        with its business context, in one transaction."""
        log.warning("revenue journal %s refused: %s", row.id, exc.detail)
        async with self._sessions.begin() as session:
            await self._note(session, row.id, exc, status="failed")
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


async def _lines_of(session: AsyncSession, document_ids: list[str]) -> dict[str, list[Any]]:
    rows = await session.execute(
        sa.select(invoice_lines)
        .where(invoice_lines.c.invoice_id.in_(document_ids))
        .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)
    )
    lines: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        lines[row.invoice_id].append(row)
    return lines


async def _cursor(session: AsyncSession) -> datetime | None:
    position = await read_cursor(session, CURSOR)
    return None if position is None else datetime.fromisoformat(position)


async def _advance(session: AsyncSession, posted_at: datetime) -> None:
    """Move the cursor forward (never back: another worker may be ahead)."""
    since = await _cursor(session)
    if since is None or posted_at > since:
        await move_cursor(session, CURSOR, posted_at.isoformat())


class _BookedElsewhere(Exception):
    """A schedule moved between reading and booking it: another worker books it."""


def _due(through: date):
    """Schedules with entries due by ``through`` left to book, a batch of them."""
    return (
        sa.select(revenue_schedules)
        .where(
            sa.or_(
                # Never booked: its first entry is on the posting date or a service day.
                sa.and_(
                    revenue_schedules.c.booked_through.is_(None),
                    sa.or_(
                        revenue_schedules.c.posting_date <= through,
                        revenue_schedules.c.service_start <= through,
                    ),
                ),
                # Booked in part (a schedule booked whole holds DONE).
                revenue_schedules.c.booked_through <= through,
            )
        )
        .order_by(revenue_schedules.c.id)
        .limit(BATCH)
    )


def _unbooked(row: Any, on: date) -> bool:
    return row.booked_through is None or on >= row.booked_through
