"""The figures of a period overview, shaped from the process layer's tallies
(``process_apis.period_figures``) and its latest reconciliation: every day of the period
listed, most frequent event types first, drafts apart from issued documents, and net
totals in which credit memos count negative."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal

from canonical.money import ZERO
from canonical.time import Period
from experience_apis.finance.views import (
    CurrencyTotals,
    EventTypeCount,
    ExceptionCount,
    ExceptionsSummary,
    PostedDay,
    PostingTotals,
    ReconciliationStatus,
    UsageDay,
    UsageSummary,
)
from process_apis.invoices.counting import direction
from process_apis.period_figures import (
    DocumentTally,
    EventTally,
    ExceptionTally,
    OutboxTally,
    PostedTally,
)
from process_apis.reconciliation import ReconciliationReport

__all__ = [
    "invoiced",
    "open_exceptions",
    "posted_daily",
    "posting",
    "reconciliation",
    "usage",
]


def usage(period: Period, tallies: list[EventTally]) -> UsageSummary:
    per_day: Counter[date] = Counter()
    per_type: Counter[str] = Counter()
    for t in tallies:
        per_day[t.day] += t.events
        per_type[t.event_type] += t.events
    return UsageSummary(
        events=sum(per_type.values()),
        unmatched=sum(t.unmatched for t in tallies),
        late=sum(t.late for t in tallies),
        # Most events first, then by name.
        by_event_type=[
            EventTypeCount(event_type=t, events=n)
            for t, n in sorted(per_type.items(), key=lambda item: (-item[1], item[0]))
        ],
        daily=[
            UsageDay(date=day, events=per_day[day])
            for day in (period.first_day + timedelta(days=n) for n in range(period.days))
        ],
    )


def invoiced(tallies: list[DocumentTally]) -> list[CurrencyTotals]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for t in tallies:
        # Drafts (a grace window) are still re-rated: counted apart, not as issued.
        key = (t.currency, "draft" if t.status == "draft" else t.kind)
        counts[key] += t.documents
        sums[key] += t.total
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


def posting(tallies: list[OutboxTally]) -> list[PostingTotals]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for t in tallies:
        counts[t.currency, t.status] += t.documents
        sums[t.currency, t.status] += direction(t.kind) * t.total
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


def posted_daily(tallies: list[PostedTally]) -> list[PostedDay]:
    counts: dict[tuple[date, str], int] = defaultdict(int)
    sums: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for t in tallies:
        counts[t.day, t.currency] += t.documents
        sums[t.day, t.currency] += direction(t.kind) * t.total
    return [
        PostedDay(date=day, currency=currency, documents=counts[day, currency], total=total)
        for (day, currency), total in sorted(sums.items())
    ]


def open_exceptions(tallies: list[ExceptionTally]) -> ExceptionsSummary:
    return ExceptionsSummary(
        open=sum(t.open for t in tallies),
        by_kind=[ExceptionCount(kind=t.kind, open=t.open) for t in tallies],
    )


def reconciliation(report: ReconciliationReport | None) -> ReconciliationStatus:
    if report is None:
        return ReconciliationStatus(
            status="not_reconciled",
            generated_at=None,
            documents=0,
            reconciled_documents=0,
            pending_documents=0,
            failed_documents=0,
            variances=[],
        )
    summary = report.summary
    return ReconciliationStatus(
        status=report.status,
        generated_at=report.generated_at,
        documents=summary.documents,
        reconciled_documents=summary.reconciled_documents,
        pending_documents=summary.pending_documents,
        failed_documents=summary.failed_documents,
        variances=report.variances,
    )
