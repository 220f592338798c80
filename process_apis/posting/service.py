"""ERP posting through the outbox: each finalized invoice has a ``pending`` row that is
posted once and only once, keyed in the ERP by ``external_ref`` = the invoice id.

An ambiguous commit (the ERP may have committed but the answer was lost) is resolved by
looking the document up by external_ref before anything is sent again. Transient
failures leave the row pending for the next drain; permanent ones fail the row and
raise an exception with business context.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation, errors
from canonical.model import Customer, ErpDocument, ErpInvoice, ErpInvoiceLine, Invoice
from canonical.time import utcnow
from process_apis.exceptions.service import raise_exception
from process_apis.invoices.store import InvoiceStore
from process_apis.tables import invoices, postings
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort

__all__ = ["DrainResult", "PostingService", "posting_date"]

log = logging.getLogger("meterline.posting")


def posting_date(period_end: date) -> date:
    """The last day of the service period ending ``period_end`` (exclusive): invoices are
    booked then, so revenue lands in the month it was earned (accrual basis), and it is
    also their tax point. A closed month therefore refuses the document."""
    return period_end - timedelta(days=1)


class DrainResult(msgspec.Struct):
    posted: int = 0
    failed: int = 0
    pending: int = 0


class PostingService:
    def __init__(self, sessions: async_sessionmaker, erp: ErpPort, crm: CrmPort) -> None:
        self._sessions = sessions
        self._erp = erp
        self._crm = crm
        self._invoices = InvoiceStore(sessions)

    async def post_pending(
        self,
        *,
        run_id: str | None = None,
        limit: int = 1000,
        customers: dict[str, Customer] | None = None,
    ) -> DrainResult:
        """Post up to ``limit`` pending invoices (of one run, if given). ``customers`` is a
        cache by id the caller may have filled already; each customer is read once."""
        query = (
            sa.select(postings.c.invoice_id)
            .join(invoices, invoices.c.id == postings.c.invoice_id)
            .where(postings.c.status == "pending")
            .order_by(postings.c.invoice_id)
            .limit(limit)
        )
        if run_id:
            query = query.where(invoices.c.run_id == run_id)
        async with self._sessions() as session:
            ids = [r[0] for r in await session.execute(query)]
        customers = {} if customers is None else customers
        result = DrainResult()
        # All invoices with their lines in two queries, not two per invoice.
        for invoice in await self._invoices.many(ids):
            outcome = await self._post(invoice, customers)
            setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    async def _post(self, invoice: Invoice, customers: dict[str, Customer]) -> str:
        """Post one invoice; returns ``posted``, ``failed`` or ``pending``."""
        token = correlation.use(invoice.correlation_id or correlation.ensure())
        try:
            document = await self._submit(invoice, customers)
        except errors.UpstreamError as exc:
            await self._record_attempt(invoice.id, f"{exc.code}: {exc.detail}")
            return "pending"
        except (errors.BusinessRuleViolation, errors.InvalidRequest, errors.NotFound) as exc:
            await self._fail(invoice, exc)
            return "failed"
        finally:
            correlation.reset(token)
        await self._mark_posted(invoice.id, document)
        return "posted"

    async def _submit(self, invoice: Invoice, customers: dict[str, Customer]) -> ErpDocument:
        # No lookup first: the ERP answers a repeated external_ref with the document it
        # already holds, so a re-drive after a crash costs one call, not two.
        customer = customers.get(invoice.customer_id)
        if customer is None:
            customer = customers[invoice.customer_id] = await self._crm.get_customer(
                invoice.customer_id
            )
        document = ErpInvoice(
            external_ref=invoice.id,
            kind="invoice",
            customer_id=invoice.customer_id,
            customer_name=customer.name,
            legal_entity_id=invoice.legal_entity_id,
            currency=invoice.currency,
            posting_date=posting_date(invoice.period_end),
            lines=[
                ErpInvoiceLine(
                    item_code=line.item_code,
                    description=line.description,
                    amount=line.amount,
                    tax_amount=line.tax.amount,
                )
                for line in invoice.lines
            ],
            correlation_id=invoice.correlation_id,
        )
        try:
            return await self._erp.post_invoice(document)
        except errors.AmbiguousCommit:
            found = await self._erp.find_document(invoice.id)
            if found is None:
                raise
            return found

    async def _record_attempt(self, invoice_id: str, error: str) -> None:
        log.info("posting of %s deferred: %s", invoice_id, error)
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice_id)
                .values(
                    attempts=postings.c.attempts + 1, last_error=error[:1000], updated_at=utcnow()
                )
            )

    async def _fail(self, invoice: Invoice, exc: errors.MeterlineError) -> None:
        log.warning("posting of %s failed: %s", invoice.id, exc.detail)
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice.id)
                .values(
                    status="failed",
                    attempts=postings.c.attempts + 1,
                    last_error=f"{exc.code}: {exc.detail}"[:1000],
                    updated_at=utcnow(),
                )
            )
            await raise_exception(
                session,
                "posting_failed",
                invoice.id,
                exc.detail,
                {
                    "invoice_id": invoice.id,
                    "invoice_number": invoice.number,
                    "customer_id": invoice.customer_id,
                    "legal_entity_id": invoice.legal_entity_id,
                    "total": str(invoice.total),
                    "currency": invoice.currency,
                    "error_code": exc.code,
                },
            )

    async def _mark_posted(self, invoice_id: str, document: ErpDocument) -> None:
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice_id)
                .values(
                    status="posted",
                    erp_document_id=document.id,
                    attempts=postings.c.attempts + 1,
                    last_error=None,
                    updated_at=now,
                )
            )
            await session.execute(
                sa.update(invoices)
                .where(invoices.c.id == invoice_id, invoices.c.status == "finalized")
                .values(status="posted", erp_document_id=document.id, posted_at=now)
            )
