"""Experience API for customer portals (``/experience/portal/v1``)."""

from __future__ import annotations

from litestar import Router, get

from experience_apis.portal.service import PortalService
from experience_apis.portal.views import PortalInvoice, PortalInvoiceList
from system_apis.routing import Limit, StartingAfter, one_of

__all__ = ["router"]

StatusFilter = one_of("finalized", "posted", "paid", "void")


@get("/customers/{customer_id:str}/invoices", summary="A customer's invoices, newest last")
async def customer_invoices(
    portal: PortalService,
    customer_id: str,
    status: StatusFilter = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> PortalInvoiceList:
    return await portal.customer_invoices(
        customer_id, status=status, limit=limit, starting_after=starting_after
    )


@get("/invoices/{invoice_id:str}", summary="An invoice as the customer sees it")
async def invoice(portal: PortalService, invoice_id: str) -> PortalInvoice:
    return await portal.invoice(invoice_id)


router = Router(
    path="/experience/portal/v1",
    route_handlers=[customer_invoices, invoice],
    tags=["experience-portal"],
)
