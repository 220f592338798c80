"""Process API: lineage and tracing (``/process/lineage/v1``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from canonical.access import requires
from process_apis.lineage.service import LineageService
from process_apis.lineage.views import CorrelationTrace, EventList
from system_apis.routing import Limit

__all__ = ["router"]

READ = requires("billing:read")

CorrelationId = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
SeqCursor = Annotated[int | None, Parameter(ge=1, required=False)]


@get(
    "/correlations/{correlation_id:str}",
    security=READ,
    summary="Everything one request caused, and the chain from its events to ERP documents",
)
async def trace_correlation(
    lineage: LineageService, correlation_id: CorrelationId
) -> CorrelationTrace:
    return await lineage.trace(correlation_id)


@get(
    "/invoices/{invoice_id:str}/lines/{line_id:str}/events",
    security=READ,
    summary="The source events behind an invoice line (paginated by event seq)",
)
async def line_events(
    lineage: LineageService,
    invoice_id: str,
    line_id: str,
    limit: Limit = 50,
    starting_after: SeqCursor = None,
) -> EventList:
    events, has_more = await lineage.line_events(
        invoice_id, line_id, limit=limit, starting_after=starting_after
    )
    return EventList(data=events, has_more=has_more)


router = Router(
    path="/process/lineage/v1",
    route_handlers=[trace_correlation, line_events],
    tags=["process-lineage"],
)
