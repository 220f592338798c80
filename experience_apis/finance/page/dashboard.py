"""What the operations page shows for a period, gathered from the finance service in one
place: the overview, its charts, the variance table of its latest reconciliation, the
exceptions and the backlog. Gathering it reconciles nothing."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import msgspec

from canonical import errors
from canonical.time import Period
from experience_apis.finance.page.charts import BarChart, daily_points
from experience_apis.finance.service import FinanceService
from experience_apis.finance.views import FinanceException, PeriodOverview
from process_apis.reconciliation import ReconciliationVariance

__all__ = ["VarianceRow", "dashboard", "variance_rows"]

PAGE_SIZE = 50


class VarianceRow(msgspec.Struct, kw_only=True):
    """One variance as the table shows it: Meterline's figure against the other side's."""

    kind: str
    subject: str
    ours: str | None
    theirs: str | None
    difference: str | None
    detail: str


# Per kind: the context fields holding (Meterline's figure, the other side's, difference).
_FIGURES = {
    "quantity_mismatch": ("event_quantity", "invoiced_quantity", "difference"),
    "document_missing": ("total", "erp_total", "difference"),
    "document_mismatch": ("total", "erp_total", "difference"),
    "journal_unbalanced": ("total", "erp_total", "imbalance"),
    "unexpected_document": (None, "erp_total", None),
}


def _subject(variance: ReconciliationVariance) -> str:
    c = variance.context
    if variance.kind == "quantity_mismatch":
        return f"{c.get('customer_id')} · {c.get('meter_code')}"
    if "invoice_number" in c:
        return f"{c.get('invoice_number')} ({c.get('customer_id')})"
    if "erp_document_id" in c and c.get("erp_document_id"):
        return f"ERP {c.get('erp_document_id')} ({c.get('customer_id')})"
    return f"ledger {c.get('legal_entity_id')} {c.get('currency')}"


def variance_rows(variances: list[ReconciliationVariance]) -> list[VarianceRow]:
    rows = []
    for v in variances:
        ours, theirs, diff = _FIGURES.get(v.kind, (None, None, None))
        rows.append(
            VarianceRow(
                kind=v.kind,
                subject=_subject(v),
                ours=v.context.get(ours) if ours else None,
                theirs=v.context.get(theirs) if theirs else None,
                difference=v.context.get(diff) if diff else None,
                detail=v.detail,
            )
        )
    return rows


def _charts(overview: PeriodOverview) -> list[Any]:
    # Every day of the period is listed already, zeros included.
    usage = [(d.date, Decimal(d.events)) for d in overview.usage.daily]
    charts = [BarChart("Usage events per day", usage, "events").svg()]
    by_currency: dict[str, dict] = defaultdict(dict)
    for day in overview.posted_daily:
        by_currency[day.currency][day.date] = day.total
    for currency in sorted(by_currency) or ["—"]:
        points = daily_points(by_currency.get(currency, {}))
        title = f"Posted to the ERP per day ({currency})" if currency != "—" else "Posted"
        charts.append(BarChart(title, points, currency if currency != "—" else "").svg())
    return charts


async def dashboard(
    finance: FinanceService,
    period: Period,
    *,
    status: str | None,
    kind: str | None,
    starting_after: str | None,
    highlighted: str | None,
) -> dict[str, Any]:
    """The template context of the page for ``period`` (exceptions filtered as asked)."""
    report = await finance.latest_reconciliation(period)
    overview = await finance.overview_with(period, report)
    exceptions = await finance.exceptions(
        status=status, kind=kind, limit=PAGE_SIZE, starting_after=starting_after
    )
    backlog = await finance.backlog(limit=PAGE_SIZE)
    handled: FinanceException | None = None
    if highlighted:
        try:
            handled = await finance.exception(highlighted)
        except errors.NotFound:
            handled = None
    return {
        "period": str(period),
        "overview": overview,
        "charts": _charts(overview),
        "variances": variance_rows(report.variances) if report else [],
        "documents": [d for d in report.documents if d.status != "reconciled"] if report else [],
        "exceptions": exceptions,
        "backlog": backlog,
        "handled": handled,
        "filters": {"status": status or "", "kind": kind or ""},
        "kinds": sorted({k.kind for k in overview.exceptions.by_kind}),
    }
