"""Portal queries, answered through process services only."""

from __future__ import annotations

from canonical import errors
from experience_apis.portal.views import PortalInvoice, PortalInvoiceList, detail, summary
from process_apis.customers import CustomerDirectory
from process_apis.invoices.store import InvoiceStore

__all__ = ["PortalService"]

# Drafts are work in progress; customers see documents from finalization on.
VISIBLE = ("finalized", "posted", "paid", "void")


class PortalService:
    def __init__(self, invoices: InvoiceStore, customers: CustomerDirectory) -> None:
        self._invoices = invoices
        self._customers = customers

    async def _visible_customer(self, customer_id: str, partner_id: str | None):
        """The customer, if the caller may see it. A partner asking for a customer of
        another tenant gets the same 404 as for one that does not exist: it must not
        even learn that the id is taken."""
        customer = await self._customers.get(customer_id)  # 404 for an unknown customer
        if partner_id is not None and customer.partner_id != partner_id:
            # Word for word the CRM's answer for an unknown id (code included).
            raise errors.NotFound(
                f"customer {customer_id[:80]} not found", code="customer_not_found"
            )
        return customer

    async def customer_invoices(
        self,
        customer_id: str,
        *,
        partner_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
        starting_after: str | None = None,
    ) -> PortalInvoiceList:
        await self._visible_customer(customer_id, partner_id)
        if status is not None and status not in VISIBLE:
            return PortalInvoiceList(data=[], has_more=False)
        # Visibility is part of the query: dropping drafts from a page already read would
        # answer short (even empty) pages that still say has_more, with no cursor to go on.
        page, has_more = await self._invoices.list(
            customer_id=customer_id,
            statuses=VISIBLE if status is None else (status,),
            limit=limit,
            starting_after=starting_after,
        )
        return PortalInvoiceList(data=[summary(i) for i in page], has_more=has_more)

    async def invoice(self, invoice_id: str, *, partner_id: str | None = None) -> PortalInvoice:
        invoice = await self._invoices.get(invoice_id)
        if invoice.status not in VISIBLE:
            raise errors.NotFound(f"invoice {invoice_id} not found")
        try:
            customer = await self._visible_customer(invoice.customer_id, partner_id)
        except errors.NotFound:
            raise errors.NotFound(f"invoice {invoice_id} not found") from None
        return detail(invoice, customer)
