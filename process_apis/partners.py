"""A partner's tenant: the CRM accounts a reseller owns and the documents billed to them.

Every lookup takes the partner and answers a record of another tenant exactly as it
answers an id that does not exist (same error, code and wording), so a partner cannot
even learn that an id is taken. The portal asks the same lookups with the partner of its
caller's token, or none for a first-party portal app, which sees every customer.

Of documents, every audience sees the issued ones only (``process_apis.invoices.queries``):
neither drafts nor a draft voided before it was ever finalized."""

from __future__ import annotations

from datetime import date

from canonical import errors
from canonical.model import Customer
from process_apis.invoices.queries import ISSUED, DocumentOwner, DocumentQueries, IssuedDocument
from process_apis.invoices.store import InvoiceStore
from system_apis.crm.port import CrmPort

__all__ = ["PartnerTenancy"]


def _no_customer(customer_id: str) -> errors.NotFound:
    return errors.NotFound(f"customer {customer_id[:80]} not found", code="customer_not_found")


def _no_invoice(invoice_id: str) -> errors.NotFound:
    return errors.NotFound(f"invoice {invoice_id[:80]} not found")


class PartnerTenancy:
    def __init__(self, crm: CrmPort, invoices: InvoiceStore, documents: DocumentQueries) -> None:
        self._crm = crm
        self._invoices = invoices
        self._documents = documents

    async def customers(
        self, partner_id: str, *, limit: int, starting_after: str | None
    ) -> tuple[list[Customer], bool]:
        """A page of the partner's customers, in id order."""
        return await self._crm.list_customers(
            limit=limit, starting_after=starting_after, partner_id=partner_id
        )

    async def customer(self, partner_id: str | None, customer_id: str) -> Customer:
        """The customer, if ``partner_id`` owns it (None: any customer)."""
        try:
            customer = await self._crm.get_customer(customer_id)
        except errors.NotFound:
            raise _no_customer(customer_id) from None
        if partner_id is not None and customer.partner_id != partner_id:
            raise _no_customer(customer_id)
        return customer

    async def document_owner(
        self, partner_id: str | None, invoice_id: str
    ) -> tuple[DocumentOwner, Customer]:
        """Whose an issued document of the tenant is, and that customer (one indexed
        lookup, the document itself is not read)."""
        owner = await self._documents.owner(invoice_id)
        if owner is None:
            raise _no_invoice(invoice_id)
        try:
            return owner, await self.customer(partner_id, owner.customer_id)
        except errors.NotFound:
            raise _no_invoice(invoice_id) from None

    async def invoice(
        self, partner_id: str | None, invoice_id: str
    ) -> tuple[IssuedDocument, Customer]:
        """An issued document of one of the tenant's customers, with that customer."""
        owner, customer = await self.document_owner(partner_id, invoice_id)
        invoice = await self._invoices.get(invoice_id)
        return IssuedDocument(invoice=invoice, issued_at=owner.issued_at), customer

    async def invoices(
        self,
        partner_id: str | None,
        customer_id: str,
        *,
        status: str | None = None,
        period_start: date | None = None,
        limit: int,
        starting_after: str | None,
    ) -> tuple[list[IssuedDocument], bool]:
        """A page of the tenant's customer's issued documents (invoices and memos), in id
        order; ``status``: only those in it."""
        await self.customer(partner_id, customer_id)
        if status is not None and status not in ISSUED:
            return [], False
        # The issued filter is part of the query: dropping drafts from a page already
        # read would answer short pages that still say has_more.
        return await self._documents.customer_documents(
            customer_id,
            statuses=ISSUED if status is None else (status,),
            period_start=period_start,
            limit=limit,
            starting_after=starting_after,
        )
