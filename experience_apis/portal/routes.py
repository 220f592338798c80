"""Experience API for customer portals (``/experience/portal/v1``)."""

from __future__ import annotations

from litestar import Router, get

from canonical.access import requires
from experience_apis.portal.service import PortalService
from experience_apis.portal.views import PortalInvoice, PortalInvoiceList
from experience_apis.routing import Caller
from system_apis.routing import Limit, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("portal:read")

StatusFilter = one_of("finalized", "posted", "paid", "void")


@get(
    "/customers/{customer_id:str}/invoices",
    security=READ,
    summary="A customer's invoices, newest last",
)
async def customer_invoices(
    portal: PortalService,
    caller: Caller,
    customer_id: str,
    status: StatusFilter = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> PortalInvoiceList:
    return await portal.customer_invoices(
        customer_id,
        partner_id=caller.partner_id,
        status=status,
        limit=limit,
        starting_after=starting_after,
    )


@get("/invoices/{invoice_id:str}", security=READ, summary="An invoice as the customer sees it")
async def invoice(portal: PortalService, caller: Caller, invoice_id: str) -> PortalInvoice:
    return await portal.invoice(invoice_id, partner_id=caller.partner_id)


router = Router(
    path="/experience/portal/v1",
    route_handlers=[customer_invoices, invoice],
    tags=["experience-portal"],
)
