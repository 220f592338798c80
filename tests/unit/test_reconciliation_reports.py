"""The latest reconciliation report of each period: kept as it was made, replaced by a
later one only (two reconciliations finishing out of order keep the later), per period,
and a report kept in a shape this version cannot read counts as none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.time import Period
from process_apis.exceptions.service import ExceptionService
from process_apis.reconciliation.report import (
    ReconciledDocument,
    ReconciliationReport,
    ReconciliationSummary,
    ReconciliationVariance,
)
from process_apis.reconciliation.service import EXCEPTION_KIND, ReconciliationService
from process_apis.reconciliation.store import ReportStore, keep_report
from process_apis.tables import reconciliation_reports

MADE = datetime(2026, 2, 3, 9, 30, 15, 123456, tzinfo=UTC)


def report(period: str, at: datetime, *, variances: int = 0) -> ReconciliationReport:
    found = [
        ReconciliationVariance(
            kind="document_mismatch",
            subject=f"{period}:inv_{n}",
            detail="the ERP holds another total",
            context={"total": "119.00", "erp_total": "118.99", "difference": "0.01"},
        )
        for n in range(variances)
    ]
    return ReconciliationReport(
        object="reconciliation",
        period=period,
        status="variances" if found else "balanced",
        generated_at=at,
        summary=ReconciliationSummary(
            quantities=0,
            documents=1,
            reconciled_documents=0 if found else 1,
            pending_documents=0,
            failed_documents=0,
            uninvoiced_subscriptions=0,
            variances=len(found),
        ),
        quantities=[],
        documents=[
            ReconciledDocument(
                invoice_id="inv_0",
                number="DE-2026-000001",
                kind="invoice",
                customer_id="cus_de",
                legal_entity_id="le_de",
                currency="EUR",
                status="variance" if found else "reconciled",
                total=Decimal("119.00"),
                erp_document_id="erp_1",
                erp_total=Decimal("118.99") if found else Decimal("119.00"),
            )
        ],
        ledgers=[],
        uninvoiced=[],
        variances=found,
    )


async def test_a_period_keeps_its_latest_report_as_it_was_made(sessions):
    store = ReportStore(sessions)

    async def keep(report: ReconciliationReport) -> bool:
        async with sessions.begin() as session:
            return await keep_report(session, report)

    period = Period(2026, 1)
    assert await store.latest(period) is None

    first = report("2026-01", MADE, variances=1)
    assert await keep(first)
    assert await store.latest(period) == first  # amounts, times and variances intact

    later = report("2026-01", MADE + timedelta(minutes=5))
    assert await keep(later)
    # One that finished after it but was made before: the later one stays.
    assert not await keep(report("2026-01", MADE + timedelta(minutes=1), variances=1))
    assert await store.latest(period) == later

    # Other periods are their own.
    assert await store.latest(Period(2026, 2)) is None
    february = report("2026-02", MADE)
    await keep(february)
    assert (await store.latest(Period(2026, 2)), await store.latest(period)) == (february, later)


async def test_a_report_of_another_shape_counts_as_none(sessions):
    async with sessions.begin() as session:
        await session.execute(
            sa.insert(reconciliation_reports).values(
                period="2025-12",
                status="balanced",
                generated_at=MADE,
                report={"object": "reconciliation", "period": "2025-12"},
            )
        )
    assert await ReportStore(sessions).latest(Period(2025, 12)) is None


async def test_exceptions_follow_the_kept_report_whatever_order_reconciliations_finish(sessions):
    """A reconciliation that finishes after a later one of its period was kept records
    nothing: the open variances are always those of the report finance is shown."""
    service = ReconciliationService(sessions, erp=None, billing=None, crm=None)
    exceptions = ExceptionService(sessions)
    period = Period(2026, 1)

    async def open_variances() -> set[str]:
        return await exceptions.open_subjects(EXCEPTION_KIND, prefix=f"{period}:")

    await service._record(period, report("2026-01", MADE, variances=2))
    assert await open_variances() == {"2026-01:inv_0", "2026-01:inv_1"}
    balanced = report("2026-01", MADE + timedelta(minutes=5))
    await service._record(period, balanced)
    assert await open_variances() == set()
    # Made in between, finished last: neither re-opens the variances nor is shown.
    await service._record(period, report("2026-01", MADE + timedelta(minutes=1), variances=1))
    assert await open_variances() == set()
    assert await service.latest(period) == balanced
