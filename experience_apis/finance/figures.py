"""The figures of a period overview, read from the process layer's records.

Read-only queries over what the process services store (usage events, documents, the
ERP outbox, exceptions): the process layer writes them, finance only counts them. Amounts
are stored as exact decimal text, so they are added here in Python, per currency, never
in SQL (where text would not sum, and a float would not do)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.money import ZERO
from canonical.time import Period, as_utc
from experience_apis.finance.views import (
    CurrencyTotals,
    EventTypeCount,
    ExceptionCount,
    ExceptionsSummary,
    PostedDay,
    PostingTotals,
    UsageDay,
    UsageSummary,
)
from process_apis.reconciliation.quantities import direction, standing
from process_apis.tables import exceptions, invoices, postings, usage_events

__all__ = [
    "billing_held",
    "invoiced",
    "open_exceptions",
    "posting",
    "usage",
]


def _day(column, dialect: str):
    """The UTC calendar day of a timestamp column, as ``YYYY-MM-DD`` text."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.date(column)  # SQLite keeps UTC timestamps as ISO text


def _in_period(period: Period):
    return sa.and_(usage_events.c.timestamp >= period.start, usage_events.c.timestamp < period.end)


async def usage(session: AsyncSession, period: Period) -> UsageSummary:
    """One pass over the period's events (grouped by day and event type): they are the
    bulk of the store, so they are not scanned once per figure."""
    day = _day(usage_events.c.timestamp, session.bind.dialect.name).label("day")
    rows = await session.execute(
        sa.select(
            day,
            usage_events.c.event_type,
            sa.func.count(),
            sa.func.sum(sa.case((usage_events.c.matched == 0, 1), else_=0)),
            sa.func.sum(sa.case((usage_events.c.adjustment != 0, 1), else_=0)),
        )
        .where(_in_period(period))
        .group_by(day, usage_events.c.event_type)
    )
    per_day: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    unmatched = late = 0
    for on, event_type, events, unmatched_events, late_events in rows:
        per_day[on] += int(events)
        per_type[event_type] += int(events)
        unmatched += int(unmatched_events)
        late += int(late_events)
    days = [period.first_day + timedelta(days=n) for n in range(period.days)]
    return UsageSummary(
        events=sum(per_type.values()),
        unmatched=unmatched,
        late=late,
        # Most events first, then by name.
        by_event_type=[
            EventTypeCount(event_type=t, events=n)
            for t, n in sorted(per_type.items(), key=lambda item: (-item[1], item[0]))
        ],
        daily=[UsageDay(date=d, events=per_day[d.isoformat()]) for d in days],
    )


def _documents(period: Period):
    """The period's issued documents that count (drafts and unposted voids aside)."""
    return sa.and_(
        invoices.c.period_start == period.first_day, standing(), invoices.c.status != "draft"
    )


async def invoiced(session: AsyncSession, period: Period) -> list[CurrencyTotals]:
    rows = await session.execute(
        sa.select(invoices.c.currency, invoices.c.kind, invoices.c.status, invoices.c.total).where(
            invoices.c.period_start == period.first_day, standing()
        )
    )
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for currency, kind, status, total in rows:
        # Drafts (a grace window) are still re-rated: counted apart, not as issued.
        key = (currency, "draft" if status == "draft" else kind)
        counts[key] += 1
        sums[key] += total
    out = []
    for currency in sorted({c for c, _ in counts}):
        inv, credit, debit = (sums[currency, k] for k in ("invoice", "credit_memo", "debit_memo"))
        out.append(
            CurrencyTotals(
                currency=currency,
                invoices=counts[currency, "invoice"],
                invoiced_total=inv,
                credit_memos=counts[currency, "credit_memo"],
                credited_total=credit,
                debit_memos=counts[currency, "debit_memo"],
                debited_total=debit,
                net_total=inv + debit - credit,
                drafts=counts[currency, "draft"],
                draft_total=sums[currency, "draft"],
            )
        )
    return out


async def posting(
    session: AsyncSession, period: Period
) -> tuple[list[PostingTotals], list[PostedDay]]:
    """Where the period's documents stand in the ERP outbox, per currency, and those
    posted per day the ERP took them: both from one read of the outbox."""
    rows = (
        await session.execute(
            sa.select(
                invoices.c.currency,
                invoices.c.kind,
                invoices.c.total,
                invoices.c.posted_at,
                postings.c.status,
            )
            .join(postings, postings.c.invoice_id == invoices.c.id)
            .where(_documents(period))
        )
    ).all()
    return _posting_totals(rows), _posted_daily(rows)


def _posting_totals(rows) -> list[PostingTotals]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        counts[row.currency, row.status] += 1
        sums[row.currency, row.status] += direction(row.kind) * row.total
    return [
        PostingTotals(
            currency=currency,
            posted=counts[currency, "posted"],
            posted_total=sums[currency, "posted"],
            pending=counts[currency, "pending"],
            pending_total=sums[currency, "pending"],
            failed=counts[currency, "failed"],
            failed_total=sums[currency, "failed"],
        )
        for currency in sorted({c for c, _ in counts})
    ]


def _posted_daily(rows) -> list[PostedDay]:
    counts: dict[tuple[date, str], int] = defaultdict(int)
    sums: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        if row.status != "posted" or row.posted_at is None:
            continue
        key = (as_utc(row.posted_at).date(), row.currency)
        counts[key] += 1
        sums[key] += direction(row.kind) * row.total
    return [
        PostedDay(date=day, currency=currency, documents=counts[day, currency], total=total)
        for (day, currency), total in sorted(sums.items())
    ]


async def billing_held(session: AsyncSession, period: Period) -> int:
    """Subscriptions whose billing for ``period`` is held (subject ``<sub>:<period>``)."""
    found = await session.execute(
        sa.select(sa.func.count()).where(
            exceptions.c.kind == "billing_failed",
            exceptions.c.status == "open",
            exceptions.c.subject.endswith(f":{period}", autoescape=True),
        )
    )
    return int(found.scalar_one())


async def open_exceptions(session: AsyncSession) -> ExceptionsSummary:
    rows = (
        await session.execute(
            sa.select(exceptions.c.kind, sa.func.count())
            .where(exceptions.c.status == "open")
            .group_by(exceptions.c.kind)
            .order_by(sa.func.count().desc(), exceptions.c.kind)
        )
    ).all()
    return ExceptionsSummary(
        open=sum(int(n) for _, n in rows),
        by_kind=[ExceptionCount(kind=kind, open=int(n)) for kind, n in rows],
    )
