"""Process API: reconciliation of a billing period (``/process/reconciliation/v1``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from canonical.access import requires
from canonical.time import Period
from process_apis.reconciliation.report import ReconciliationReport
from process_apis.reconciliation.service import ReconciliationService
from system_apis.routing import PERIOD_PATTERN

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("billing:read")

PeriodPath = Annotated[
    str,
    Parameter(pattern=PERIOD_PATTERN, description="YYYY-MM"),
]


@get(
    "/periods/{period:str}",
    security=READ,
    summary="Reconcile a billing period: events, invoices and memos, ERP documents, journals",
    description=(
        "Reconciles the period as it stands now and reports every figure compared. Each "
        "variance is also raised as a `reconciliation_variance` exception (listed in "
        "`/process/exceptions/v1`), and an open one of the period that is gone now is "
        "closed, so repeating the call is safe. Documents not posted yet are `pending`, "
        "not variances."
    ),
)
async def reconcile_period(
    reconciliation: ReconciliationService, period: PeriodPath
) -> ReconciliationReport:
    return await reconciliation.reconcile(Period.parse(period))


router = Router(
    path="/process/reconciliation/v1",
    route_handlers=[reconcile_period],
    tags=["process-reconciliation"],
)
