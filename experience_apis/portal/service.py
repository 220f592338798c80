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

    async def customer_invoices(
        self,
        customer_id: str,
        *,
        status: str | None = None,
        limit: int = 20,
        starting_after: str | None = None,
    ) -> PortalInvoiceList:
        await self._customers.get(customer_id)  # 404 for an unknown customer
        if status is not None and status not in VISIBLE:
            return PortalInvoiceList(data=[], has_more=False)
        page, has_more = await self._invoices.list(
            customer_id=customer_id, status=status, limit=limit, starting_after=starting_after
        )
        return PortalInvoiceList(
            data=[summary(i) for i in page if i.status in VISIBLE], has_more=has_more
        )

    async def invoice(self, invoice_id: str) -> PortalInvoice:
        invoice = await self._invoices.get(invoice_id)
        if invoice.status not in VISIBLE:
            raise errors.NotFound(f"invoice {invoice_id} not found")
        customer = await self._customers.get(invoice.customer_id)
        return detail(invoice, customer)
