"""Process API: revenue schedules and recognition journals (``/process/revenue/v1``)."""

from __future__ import annotations

from litestar import Router, get

from canonical.access import requires
from process_apis.revenue.service import RevenueService
from process_apis.revenue.views import DocumentSchedule, RevenueJournalList
from system_apis.routing import Limit, StartingAfter, one_of

__all__ = ["router"]

READ = requires("billing:read")

JournalStatus = one_of("pending", "posted", "failed")


@get(
    "/invoices/{invoice_id:str}/schedule",
    security=READ,
    summary="How a posted invoice's or memo's revenue is recognised, day by day",
)
async def document_schedule(revenue: RevenueService, invoice_id: str) -> DocumentSchedule:
    return await revenue.schedule(invoice_id)


@get("/journals", security=READ, summary="Revenue recognition journals booked to the ERP")
async def list_journals(
    revenue: RevenueService,
    status: JournalStatus = None,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
) -> RevenueJournalList:
    data, has_more = await revenue.journals(
        status=status, limit=limit, starting_after=starting_after
    )
    return RevenueJournalList(data=data, has_more=has_more)


router = Router(
    path="/process/revenue/v1",
    route_handlers=[document_schedule, list_journals],
    tags=["process-revenue"],
)
