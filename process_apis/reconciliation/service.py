"""Reconciliation of a billing period (architecture §5 step 7, ADR 0009): per customer
and meter, the stored events against the invoiced quantities; per document, Meterline's
totals against the ERP's; the ERP's journals and ledgers balanced.

Every variance found is raised as a ``reconciliation_variance`` exception (one per
subject: ``<period>:<customer>:<meter>``, ``<period>:<document id>`` or
``<period>:ledger:<legal entity>:<currency>``), so finance sees it in
``/process/exceptions/v1`` with the figures; an open one of the period that the next
reconciliation no longer finds is closed. Reconciling is therefore safe to repeat (a
variance still there counts one more occurrence), and its report is the state of now.

The report is also kept as the period's latest (``latest``): what readers show until the
period is reconciled again, so that looking at a period neither calls the ERP nor counts
occurrences."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.time import Period, utcnow
from process_apis.exceptions.service import (
    open_subjects,
    raise_exceptions,
    resolve_exceptions,
)
from process_apis.reconciliation.documents import DocumentCheck
from process_apis.reconciliation.quantities import QuantityCheck
from process_apis.reconciliation.report import (
    ReconciliationReport,
    ReconciliationSummary,
)
from process_apis.reconciliation.store import ReportStore, keep_report
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort

__all__ = ["EXCEPTION_KIND", "ReconciliationService"]

EXCEPTION_KIND = "reconciliation_variance"
_DETAIL_MAX = 1000  # the exceptions table's detail column


class ReconciliationService:
    def __init__(
        self, sessions: async_sessionmaker, erp: ErpPort, billing: BillingPort, crm: CrmPort
    ) -> None:
        self._sessions = sessions
        self._quantities = QuantityCheck(sessions, crm, billing)
        self._documents = DocumentCheck(sessions, erp)
        self._reports = ReportStore(sessions)

    async def reconcile(self, period: Period) -> ReconciliationReport:
        """Reconcile ``period`` now, raise its variances as exceptions and close those
        that are gone; returns the report, kept as the period's latest."""
        generated_at = utcnow()
        quantities = await self._quantities.run(period)
        documents = await self._documents.run(period)
        variances = sorted(
            quantities.variances + documents.variances, key=lambda v: (v.subject, v.kind)
        )
        statuses = [row.status for row in documents.rows]
        report = ReconciliationReport(
            object="reconciliation",
            period=str(period),
            status="variances" if variances else "balanced",
            generated_at=generated_at,
            summary=ReconciliationSummary(
                quantities=len(quantities.rows),
                documents=len(documents.rows),
                reconciled_documents=statuses.count("reconciled"),
                pending_documents=statuses.count("pending"),
                failed_documents=statuses.count("failed"),
                uninvoiced_subscriptions=len(quantities.uninvoiced),
                variances=len(variances),
            ),
            quantities=quantities.rows,
            documents=documents.rows,
            ledgers=documents.ledgers,
            uninvoiced=quantities.uninvoiced,
            variances=variances,
        )
        await self._record(period, report)
        return report

    async def latest(self, period: Period) -> ReconciliationReport | None:
        """The period's latest report, as it was made (nothing is reconciled); None
        when the period was never reconciled."""
        return await self._reports.latest(period)

    async def _record(self, period: Period, report: ReconciliationReport) -> None:
        """Keep the report as the period's latest and, in the same transaction, raise its
        variances and close the period's open ones it no longer finds. A reconciliation
        that finishes after a later one of the period was kept records nothing: the
        exceptions always follow the report finance is shown."""
        found = [
            (v.subject, v.detail[:_DETAIL_MAX], {**v.context, "variance": v.kind}, 1)
            for v in report.variances
        ]
        async with self._sessions.begin() as session:
            if not await keep_report(session, report):
                return
            await raise_exceptions(session, EXCEPTION_KIND, found)
            gone = await open_subjects(session, EXCEPTION_KIND, prefix=f"{period}:")
            gone -= {v.subject for v in report.variances}
            await resolve_exceptions(session, EXCEPTION_KIND, gone)
