"""The figures of a billing period, counted from what the process services store: usage
events, documents, the ERP outbox and exceptions.

Read-only tallies (counts and sums per key), in no audience's shape: the experience
layer orders them, fills in empty days and derives its totals. Amounts are stored as
exact decimal text, so they are added here in Python, never in SQL (where text would not
sum, and a float would not do); totals are as the documents carry them, unsigned (the
kind says which way a document moves the balance)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.money import ZERO
from canonical.time import Period
from process_apis.billing.aggregation import event_day, read_day
from process_apis.invoices.counting import counted, standing
from process_apis.tables import exceptions, invoices, postings, usage_events

__all__ = [
    "DocumentTally",
    "EventTally",
    "ExceptionTally",
    "OutboxTally",
    "PeriodFigures",
    "PeriodTallies",
    "PostedTally",
]


class EventTally(msgspec.Struct, frozen=True, kw_only=True):
    """The period's stored events of one UTC day and event type."""

    day: date
    event_type: str
    events: int
    unmatched: int  # customer or meter unknown at receipt
    late: int  # arrived after the period was invoiced (a memo bills them)


class DocumentTally(msgspec.Struct, frozen=True, kw_only=True):
    """The period's standing documents (see ``standing``) of one currency, kind and
    status, drafts included."""

    currency: str
    kind: str  # invoice | credit_memo | debit_memo
    status: str
    documents: int
    total: Decimal


class OutboxTally(msgspec.Struct, frozen=True, kw_only=True):
    """The period's issued documents of one currency and kind in one outbox status."""

    currency: str
    kind: str
    status: str  # pending | posted | failed
    documents: int
    total: Decimal


class PostedTally(msgspec.Struct, frozen=True, kw_only=True):
    """The period's documents of one currency and kind the ERP took on one UTC day."""

    day: date
    currency: str
    kind: str
    documents: int
    total: Decimal


class ExceptionTally(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    open: int


class PeriodTallies(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    events: list[EventTally]
    documents: list[DocumentTally]
    outbox: list[OutboxTally]
    posted: list[PostedTally]
    # Subscriptions whose billing for the period is held by an open ``billing_failed``.
    billing_held: int
    # Exceptions open now, of every period (an unknown customer belongs to none); most
    # first, then by kind.
    open_exceptions: list[ExceptionTally]


class PeriodFigures:
    """Reads the tallies of a period, in one session."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def of(self, period: Period) -> PeriodTallies:
        async with self._sessions() as session:
            events = await _events(session, period)
            documents = await _documents(session, period)
            outbox, posted = await _outbox(session, period)
            held = await _billing_held(session, period)
            open_exceptions = await _open_exceptions(session)
        return PeriodTallies(
            period=str(period),
            events=events,
            documents=documents,
            outbox=outbox,
            posted=posted,
            billing_held=held,
            open_exceptions=open_exceptions,
        )


async def _events(session: AsyncSession, period: Period) -> list[EventTally]:
    """One grouped pass over the period's events: they are the bulk of the store, so
    they are not scanned once per figure."""
    day = event_day(session.bind.dialect.name).label("day")
    rows = await session.execute(
        sa.select(
            day,
            usage_events.c.event_type,
            sa.func.count(),
            sa.func.sum(sa.case((usage_events.c.matched == 0, 1), else_=0)),
            sa.func.sum(sa.case((usage_events.c.adjustment != 0, 1), else_=0)),
        )
        .where(usage_events.c.timestamp >= period.start, usage_events.c.timestamp < period.end)
        .group_by(day, usage_events.c.event_type)
        .order_by(day, usage_events.c.event_type)
    )
    return [
        EventTally(
            day=read_day(on),
            event_type=event_type,
            events=int(events),
            unmatched=int(unmatched),
            late=int(late),
        )
        for on, event_type, events, unmatched, late in rows
    ]


async def _documents(session: AsyncSession, period: Period) -> list[DocumentTally]:
    rows = await session.execute(
        sa.select(invoices.c.currency, invoices.c.kind, invoices.c.status, invoices.c.total).where(
            invoices.c.period_start == period.first_day, standing()
        )
    )
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
    for currency, kind, status, total in rows:
        counts[currency, kind, status] += 1
        sums[currency, kind, status] += total
    return [
        DocumentTally(currency=c, kind=k, status=s, documents=counts[c, k, s], total=sums[c, k, s])
        for c, k, s in sorted(counts)
    ]


async def _outbox(
    session: AsyncSession, period: Period
) -> tuple[list[OutboxTally], list[PostedTally]]:
    """Where the period's issued documents (drafts and unposted voids aside) stand in the
    ERP outbox, and those posted per day the ERP took them: both from one read."""
    rows = await session.execute(
        sa.select(
            invoices.c.currency,
            invoices.c.kind,
            invoices.c.total,
            invoices.c.posted_at,
            postings.c.status,
        )
        .join(postings, postings.c.invoice_id == invoices.c.id)
        .where(
            invoices.c.period_start == period.first_day,
            counted(),
        )
    )
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
    posted_counts: dict[tuple[date, str, str], int] = defaultdict(int)
    posted_sums: dict[tuple[date, str, str], Decimal] = defaultdict(lambda: ZERO)
    for currency, kind, total, posted_at, status in rows:
        counts[currency, kind, status] += 1
        sums[currency, kind, status] += total
        if status == "posted" and posted_at is not None:
            key = (posted_at.date(), currency, kind)
            posted_counts[key] += 1
            posted_sums[key] += total
    outbox = [
        OutboxTally(currency=c, kind=k, status=s, documents=counts[c, k, s], total=sums[c, k, s])
        for c, k, s in sorted(counts)
    ]
    posted = [
        PostedTally(day=d, currency=c, kind=k, documents=posted_counts[d, c, k], total=total)
        for (d, c, k), total in sorted(posted_sums.items())
    ]
    return outbox, posted


async def _billing_held(session: AsyncSession, period: Period) -> int:
    """Subscriptions whose billing for ``period`` is held (subject ``<sub>:<period>``)."""
    found = await session.execute(
        sa.select(sa.func.count()).where(
            exceptions.c.kind == "billing_failed",
            exceptions.c.status == "open",
            exceptions.c.subject.endswith(f":{period}", autoescape=True),
        )
    )
    return int(found.scalar_one())


async def _open_exceptions(session: AsyncSession) -> list[ExceptionTally]:
    rows = await session.execute(
        sa.select(exceptions.c.kind, sa.func.count())
        .where(exceptions.c.status == "open")
        .group_by(exceptions.c.kind)
        .order_by(sa.func.count().desc(), exceptions.c.kind)
    )
    return [ExceptionTally(kind=kind, open=int(n)) for kind, n in rows]
