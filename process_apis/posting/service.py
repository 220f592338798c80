"""ERP posting through the outbox: each finalized invoice has a ``pending`` row that is
posted once and only once, keyed in the ERP by ``external_ref`` = the invoice id.

An ambiguous commit (the ERP may have committed but the answer was lost) is resolved by
looking the document up by external_ref before anything is sent again. Transient
failures leave the row pending until its next attempt; permanent ones fail the row and
raise an exception with business context.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation, errors
from canonical.model import Customer, ErpDocument, ErpInvoice, ErpInvoiceLine, Invoice
from canonical.time import utcnow
from process_apis.audit import append
from process_apis.exceptions.service import raise_exception, resolve_exceptions
from process_apis.invoices.store import InvoiceStore
from process_apis.posting.payments import payment_status
from process_apis.tables import invoices, postings
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort

__all__ = [
    "DrainResult",
    "PostingService",
    "booking_date",
    "document_date",
    "posting_date",
]

log = logging.getLogger("meterline.posting")


def posting_date(period_end: date) -> date:
    """The last day of the service period ending ``period_end`` (exclusive): invoices are
    booked then, so revenue lands in the month it was earned (accrual basis), and it is
    also their tax point. A closed month therefore refuses the document."""
    return period_end - timedelta(days=1)


def document_date(invoice: Invoice) -> date:
    return booking_date(invoice.kind, invoice.period_end, invoice.created_at)


def booking_date(kind: str, period_end: date, issued_at: datetime) -> date:
    """The ERP posting date of a document: an invoice books on its period's last day; a
    memo on the day it was issued (a correction never reopens a closed period)."""
    if kind == "invoice":
        return posting_date(period_end)
    return issued_at.date()


class DrainResult(msgspec.Struct):
    posted: int = 0
    failed: int = 0
    pending: int = 0


class PostingService:
    """One document's way into the ERP, and the outbox rows that track it. The worker that
    decides when to post (throttle, retries, circuit breaker) is ``OutboxWorker``."""

    def __init__(self, sessions: async_sessionmaker, erp: ErpPort, crm: CrmPort) -> None:
        self._sessions = sessions
        self._erp = erp
        self._crm = crm
        self._invoices = InvoiceStore(sessions)

    async def due(self, limit: int) -> list[str]:
        """Pending documents whose next attempt is due and that no worker holds."""
        now = utcnow()
        query = (
            sa.select(postings.c.invoice_id)
            .where(
                postings.c.status == "pending",
                sa.or_(postings.c.next_attempt_at.is_(None), postings.c.next_attempt_at <= now),
                sa.or_(postings.c.lease_until.is_(None), postings.c.lease_until < now),
            )
            .order_by(postings.c.invoice_id)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [r[0] for r in await session.execute(query)]

    async def claim(self, invoice_ids: list[str], owner: str, lease: timedelta) -> list[Invoice]:
        """Take the lease on those of the documents still pending and free; returns them
        with their lines. Another worker's lease keeps a document out."""
        now = utcnow()
        async with self._sessions.begin() as session:
            taken = await session.execute(
                sa.update(postings)
                .where(
                    postings.c.invoice_id.in_(invoice_ids),
                    postings.c.status == "pending",
                    sa.or_(postings.c.lease_until.is_(None), postings.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + lease)
                .returning(postings.c.invoice_id)
            )
            claimed = list(taken.scalars())
        return await self._invoices.many(claimed)

    async def requeue(self, invoice_id: str) -> bool:
        """Put a failed document back in the outbox, due now (finance fixed the cause);
        False when it is not failed (posted meanwhile, or pending already)."""
        async with self._sessions.begin() as session:
            requeued = await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice_id, postings.c.status == "failed")
                .values(
                    status="pending",
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )
            if requeued.rowcount == 1:
                await append(
                    session,
                    action="posting.requeued",
                    subject_type="invoice",
                    subject_id=invoice_id,
                )
        return requeued.rowcount == 1

    async def submit(self, invoice: Invoice, customers: dict[str, Customer]) -> ErpDocument:
        """Send one document to the ERP (once: see the module docstring)."""
        token = correlation.use(invoice.correlation_id or correlation.ensure())
        try:
            return await self._submit(invoice, customers)
        finally:
            correlation.reset(token)

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
            kind=invoice.kind,
            customer_id=invoice.customer_id,
            customer_name=customer.name,
            legal_entity_id=invoice.legal_entity_id,
            currency=invoice.currency,
            posting_date=document_date(invoice),
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

    async def defer(
        self, invoice_id: str, error: str, next_attempt_at: datetime, *, attempts: int = 1
    ) -> None:
        """Leave the document pending until ``next_attempt_at``; ``attempts`` calls made."""
        log.info("posting of %s deferred until %s: %s", invoice_id, next_attempt_at, error)
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice_id)
                .values(
                    attempts=postings.c.attempts + attempts,
                    last_error=error[:1000],
                    next_attempt_at=next_attempt_at,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )

    async def fail(self, invoice: Invoice, exc: errors.MeterlineError) -> None:
        """The ERP refused the document for good: the row fails and finance gets an
        exception with the business context to fix it and retry."""
        log.warning("posting of %s failed: %s", invoice.id, exc.detail)
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice.id)
                .values(
                    status="failed",
                    lease_owner=None,
                    lease_until=None,
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
            await append(
                session,
                action="posting.failed",
                subject_type="invoice",
                subject_id=invoice.id,
                data={"error_code": exc.code, "detail": exc.detail},
                correlation_id=invoice.correlation_id,
            )

    async def mark_posted(self, invoice_id: str, document: ErpDocument, attempts: int = 1) -> None:
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == invoice_id)
                .values(
                    status="posted",
                    erp_document_id=document.id,
                    lease_owner=None,
                    lease_until=None,
                    attempts=postings.c.attempts + attempts,
                    last_error=None,
                    updated_at=now,
                )
            )
            # Posted whatever happened meanwhile. Only a finalized document moves, and
            # with what the ERP was paid before this was recorded (``PaymentSync``): fully
            # paid, it is ``paid``. Amounts are decimal text: compared here, not in SQL;
            # the row is locked (PostgreSQL; SQLite's writer is) and the move guarded.
            invoice = (
                await session.execute(
                    sa.select(invoices.c.status, invoices.c.total, invoices.c.amount_paid)
                    .where(invoices.c.id == invoice_id)
                    .with_for_update()
                )
            ).one()
            values: dict[str, Any] = {"erp_document_id": document.id, "posted_at": now}
            if invoice.status == "finalized":
                values.update(payment_status(invoice.total, invoice.amount_paid))
            await session.execute(
                sa.update(invoices)
                .where(invoices.c.id == invoice_id, invoices.c.status == invoice.status)
                .values(values)
            )
            await append(
                session,
                action="invoice.posted",
                subject_type="invoice",
                subject_id=invoice_id,
                data={"erp_document_id": document.id, "attempts": attempts},
                correlation_id=document.correlation_id,
            )
            if values.get("status") in ("partially_paid", "paid"):
                await append(
                    session,
                    action=f"invoice.{values['status']}",
                    subject_type="invoice",
                    subject_id=invoice_id,
                    data={"amount_paid": str(invoice.amount_paid)},
                    correlation_id=document.correlation_id,
                )
            # A retried document that went through closes its exception.
            await resolve_exceptions(session, "posting_failed", {invoice_id})
