"""Finance queries and actions, answered through the process layer: its exception
workbench, reconciliation and lineage services, and the records it keeps."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import ExceptionRecord
from canonical.time import Period, utcnow
from experience_apis.finance import figures
from experience_apis.finance.backlog import PostingBacklog
from experience_apis.finance.trace import FinanceTrace, finance_trace
from experience_apis.finance.views import (
    Backlog,
    FinanceException,
    FinanceExceptionList,
    HeldSummary,
    PeriodOverview,
    ReconciliationStatus,
)
from process_apis.exceptions.service import ExceptionService
from process_apis.exceptions.workbench import RETRYABLE, ExceptionWorkbench
from process_apis.lineage.service import LineageService
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
        sessions: async_sessionmaker,
        exceptions: ExceptionService,
        workbench: ExceptionWorkbench,
        reconciliation: ReconciliationService,
        lineage: LineageService,
    ) -> None:
        self._sessions = sessions
        self._exceptions = exceptions
        self._workbench = workbench
        self._reconciliation = reconciliation
        self._lineage = lineage
        self._backlog = PostingBacklog(sessions)

    async def reconcile(self, period: Period) -> ReconciliationReport:
        """The period reconciled now (variances are raised as exceptions by the process
        layer, and those gone are closed: safe to repeat)."""
        return await self._reconciliation.reconcile(period)

    async def overview(
        self, period: Period, report: ReconciliationReport | None = None
    ) -> PeriodOverview:
        """The period at a glance; ``report``: its reconciliation, if already made."""
        generated_at = utcnow()
        report = report or await self.reconcile(period)
        async with self._sessions() as session:
            usage = await figures.usage(session, period)
            invoiced = await figures.invoiced(session, period)
            posting, posted_daily = await figures.posting(session, period)
            held = await figures.billing_held(session, period)
            exceptions = await figures.open_exceptions(session)
        summary = report.summary
        return PeriodOverview(
            object="finance_period_overview",
            period=str(period),
            generated_at=generated_at,
            usage=usage,
            invoiced=invoiced,
            posting=posting,
            posted_daily=posted_daily,
            held=HeldSummary(
                billing_held=held, uninvoiced_subscriptions=summary.uninvoiced_subscriptions
            ),
            exceptions=exceptions,
            reconciliation=ReconciliationStatus(
                status=report.status,
                generated_at=report.generated_at,
                documents=summary.documents,
                reconciled_documents=summary.reconciled_documents,
                pending_documents=summary.pending_documents,
                failed_documents=summary.failed_documents,
                variances=report.variances,
            ),
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
        items, has_more = await self._backlog.list(
            status=status, limit=limit, starting_after=starting_after
        )
        return Backlog(data=items, has_more=has_more)

    async def trace(self, correlation_id: str) -> FinanceTrace:
        return finance_trace(await self._lineage.trace(correlation_id))
