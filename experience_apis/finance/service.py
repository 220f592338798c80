"""Finance queries and actions, answered through the process layer: its exception
workbench, reconciliation and lineage services, the figures it counts and its posting
backlog."""

from __future__ import annotations

from canonical.model import ExceptionRecord
from canonical.time import Period, utcnow
from experience_apis.finance import figures
from experience_apis.finance.backlog import backlog_item
from experience_apis.finance.trace import FinanceTrace, finance_trace
from experience_apis.finance.views import (
    Backlog,
    FinanceException,
    FinanceExceptionList,
    HeldSummary,
    PeriodOverview,
)
from process_apis.exceptions.service import ExceptionService
from process_apis.exceptions.workbench import RETRYABLE, ExceptionWorkbench
from process_apis.lineage.service import LineageService
from process_apis.period_figures import PeriodFigures
from process_apis.posting.backlog import PostingBacklog
from process_apis.reconciliation import ReconciliationReport, ReconciliationService

__all__ = ["FinanceService", "finance_exception"]


def finance_exception(record: ExceptionRecord) -> FinanceException:
    context = dict(record.context)
    subject = str(context.pop("subject", ""))
    occurrences = int(context.pop("occurrences", 1))
    return FinanceException(
        id=record.id,
        kind=record.kind,
        status=record.status,
        subject=subject,
        detail=record.detail,
        occurrences=occurrences,
        context=context,
        correlation_id=record.correlation_id,
        created_at=record.created_at,
        retryable=record.status == "open" and record.kind in RETRYABLE,
        resolved_at=record.resolved_at,
        resolved_by=record.resolved_by,
        resolution=record.resolution,
    )


class FinanceService:
    def __init__(
        self,
        exceptions: ExceptionService,
        workbench: ExceptionWorkbench,
        reconciliation: ReconciliationService,
        lineage: LineageService,
        figures: PeriodFigures,
        backlog: PostingBacklog,
    ) -> None:
        self._exceptions = exceptions
        self._workbench = workbench
        self._reconciliation = reconciliation
        self._lineage = lineage
        self._figures = figures
        self._backlog = backlog

    async def reconcile(self, period: Period) -> ReconciliationReport:
        """Reconcile the period now (the ERP is called; variances are raised as
        exceptions, a standing one counting another occurrence): only when asked."""
        return await self._reconciliation.reconcile(period)

    async def latest_reconciliation(self, period: Period) -> ReconciliationReport | None:
        """The period's latest reconciliation as it was made; None if never made."""
        return await self._reconciliation.latest(period)

    async def overview(self, period: Period) -> PeriodOverview:
        """The period at a glance, with its latest reconciliation (none is made)."""
        return await self.overview_with(period, await self.latest_reconciliation(period))

    async def overview_with(
        self, period: Period, report: ReconciliationReport | None
    ) -> PeriodOverview:
        """The period at a glance, with ``report`` as its reconciliation (None: not
        reconciled yet)."""
        generated_at = utcnow()
        tallies = await self._figures.of(period)
        return PeriodOverview(
            object="finance_period_overview",
            period=str(period),
            generated_at=generated_at,
            usage=figures.usage(period, tallies.events),
            invoiced=figures.invoiced(tallies.documents),
            posting=figures.posting(tallies.outbox),
            posted_daily=figures.posted_daily(tallies.posted),
            held=HeldSummary(
                billing_held=tallies.billing_held,
                uninvoiced_subscriptions=report.summary.uninvoiced_subscriptions if report else 0,
            ),
            exceptions=figures.open_exceptions(tallies.open_exceptions),
            reconciliation=figures.reconciliation(report),
        )

    async def exceptions(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> FinanceExceptionList:
        page, has_more = await self._exceptions.list(
            status=status, kind=kind, limit=limit, starting_after=starting_after
        )
        return FinanceExceptionList(data=[finance_exception(r) for r in page], has_more=has_more)

    async def exception(self, exception_id: str) -> FinanceException:
        return finance_exception(await self._exceptions.get(exception_id))

    async def retry(self, exception_id: str) -> FinanceException:
        """Re-drive the work behind the exception (see ``ExceptionWorkbench.retry``)."""
        return finance_exception(await self._workbench.retry(exception_id))

    async def resolve(self, exception_id: str, *, by: str, note: str) -> FinanceException:
        return finance_exception(await self._workbench.resolve(exception_id, by=by, note=note))

    async def backlog(
        self, *, status: str | None = None, limit: int = 50, starting_after: str | None = None
    ) -> Backlog:
        entries, has_more = await self._backlog.list(
            status=status, limit=limit, starting_after=starting_after
        )
        now = utcnow()
        return Backlog(data=[backlog_item(e, now) for e in entries], has_more=has_more)

    async def trace(self, correlation_id: str) -> FinanceTrace:
        return finance_trace(await self._lineage.trace(correlation_id))
