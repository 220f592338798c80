"""Experience API for finance (``/experience/finance/v1``): the period overview, the
exceptions workbench, reconciling a period, the ERP posting backlog and traces by
correlation ID."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import Parameter

from canonical.access import requires
from canonical.model import Base
from canonical.time import Period
from experience_apis.finance.service import FinanceService
from experience_apis.finance.trace import FinanceTrace
from experience_apis.finance.views import (
    Backlog,
    FinanceException,
    FinanceExceptionList,
    PeriodOverview,
)
from process_apis.posting.backlog import BACKLOG_STATUSES
from process_apis.routing import (
    Idempotency,
    RequiredIdempotencyKey,
    client_id_of,
    respond_idempotently,
)
from system_apis.routing import MAX_DOCUMENT_BYTES, PERIOD_PATTERN, Limit, StartingAfter, one_of

__all__ = ["PeriodPath", "ResolveRequest", "router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("finance:read")
ACT = requires("finance:write")

PeriodPath = Annotated[
    str,
    Parameter(pattern=PERIOD_PATTERN, description="YYYY-MM"),
]
CorrelationId = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
ExceptionId = Annotated[str, Parameter(max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
StatusFilter = one_of("open", "resolved")
KindFilter = Annotated[
    str | None,
    Parameter(max_length=64, pattern=r"^[a-z0-9_]+$", required=False),
]
BacklogFilter = one_of(*BACKLOG_STATUSES)


class ResolveRequest(Base):
    # What finance did about it, for the record (kept with the exception and audited).
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


@get(
    "/periods/{period:str}/overview",
    security=READ,
    summary="A billing period at a glance: usage, invoiced, posted, held, exceptions, "
    "reconciliation",
    description=(
        "Figures per currency, as the period stands now. The reconciliation is the "
        "period's latest, as it was made at its `generated_at` (by the process "
        "reconciliation API, `meterline reconcile` or the finance page): reading the "
        "overview does not reconcile, so it neither calls the ERP nor counts occurrences "
        "of `reconciliation_variance` exceptions. A period never reconciled shows "
        "`not_reconciled`; `POST .../reconciliation` reconciles it."
    ),
)
async def period_overview(finance: FinanceService, period: PeriodPath) -> PeriodOverview:
    return await finance.overview(Period.parse(period))


@post(
    "/periods/{period:str}/reconciliation",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Reconcile a billing period now, and answer its overview",
    description=(
        "Reconciles the period as the process reconciliation API does (the ERP is asked "
        "for its documents and journals; each variance is raised as a "
        "`reconciliation_variance` exception, a standing one counting one more "
        "occurrence, and those that are gone are closed) and keeps the report as the "
        "period's latest. Answers the overview with it. A repeated Idempotency-Key "
        "answers the first result and reconciles nothing."
    ),
)
async def reconcile_period(
    request: Request,
    period: PeriodPath,
    finance: FinanceService,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[PeriodOverview]:
    month = Period.parse(period)

    async def produce():
        return 200, await finance.overview_with(month, await finance.reconcile(month))

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


@get("/exceptions", security=READ, summary="Exceptions to work, oldest first")
async def list_exceptions(
    finance: FinanceService,
    status: StatusFilter = None,
    kind: KindFilter = None,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
) -> FinanceExceptionList:
    return await finance.exceptions(
        status=status, kind=kind, limit=limit, starting_after=starting_after
    )


@get("/exceptions/{exception_id:str}", security=READ, summary="One exception")
async def get_exception(finance: FinanceService, exception_id: ExceptionId) -> FinanceException:
    return await finance.exception(exception_id)


@post(
    "/exceptions/{exception_id:str}/retry",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Retry the work that raised an exception (once its cause is fixed)",
)
async def retry_exception(
    request: Request,
    exception_id: ExceptionId,
    finance: FinanceService,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[FinanceException]:
    async def produce():
        return 200, await finance.retry(exception_id)

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


@post(
    "/exceptions/{exception_id:str}/resolve",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Resolve an exception by hand, with a note",
)
async def resolve_exception(
    request: Request,
    exception_id: ExceptionId,
    data: ResolveRequest,
    finance: FinanceService,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[FinanceException]:
    async def produce():
        by = client_id_of(request)
        return 200, await finance.resolve(exception_id, by=by, note=data.note)

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


@get(
    "/postings/backlog",
    security=READ,
    summary="Documents the ERP does not hold yet: pending in the outbox or failed, oldest "
    "first, with age, next attempt and reason",
)
async def posting_backlog(
    finance: FinanceService,
    status: BacklogFilter = None,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
) -> Backlog:
    return await finance.backlog(status=status, limit=limit, starting_after=starting_after)


@get(
    "/traces/{correlation_id:str}",
    security=READ,
    summary="One request from its source events to the ERP documents",
)
async def trace(finance: FinanceService, correlation_id: CorrelationId) -> FinanceTrace:
    return await finance.trace(correlation_id)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/experience/finance/v1",
    route_handlers=[
        period_overview,
        reconcile_period,
        list_exceptions,
        get_exception,
        retry_exception,
        resolve_exception,
        posting_backlog,
        trace,
    ],
    tags=["experience-finance"],
)
