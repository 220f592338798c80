"""What a customer owes: balances per currency over its issued documents, the payments
applied to a document, and its latest invoice.

The documents that count are those that stand in the ERP's receivables ledger or are on
their way there: every issued document (not a draft) except a void that never reached the
ERP. A posted invoice that was voided still counts, and so does the credit memo
reversing it, so the two cancel out as they do in the ledger (the documents
reconciliation counts, ``process_apis.reconciliation.quantities.standing``, drafts left
out)::

    invoiced      Σ total of invoices and debit memos
    credited      Σ total of credit memos
    paid          Σ amount paid (as the ERP reported payments)
    open_balance  invoiced - credited - paid  (negative: the customer is in credit)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Invoice
from canonical.money import ZERO
from process_apis.invoices.counting import counted
from process_apis.invoices.queries import IssuedDocument, issued
from process_apis.invoices.store import InvoiceStore
from process_apis.tables import invoice_payments, invoices

__all__ = ["AppliedPayment", "CurrencyBalance", "Receivables", "amount_due"]

RECEIVABLE_KINDS = ("invoice", "debit_memo")


class CurrencyBalance(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    invoiced: Decimal
    credited: Decimal
    paid: Decimal
    open_balance: Decimal
    # Invoices and debit memos, not void, with an amount still due.
    open_documents: int


class AppliedPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment the ERP recorded against a document, as applied to it here."""

    id: str  # the ERP's payment id
    amount: Decimal
    currency: str
    received_on: date
    recorded_at: datetime


def amount_due(invoice: Invoice) -> Decimal:
    """What is still to be paid on a document: nothing on a void or a credit memo (which
    owes the customer), never below zero."""
    if invoice.status == "void" or invoice.kind not in RECEIVABLE_KINDS:
        return ZERO
    return max(invoice.total - invoice.amount_paid, ZERO)


class _Tally(msgspec.Struct):
    invoiced: Decimal = ZERO
    credited: Decimal = ZERO
    paid: Decimal = ZERO
    open_documents: int = 0


class Receivables:
    def __init__(self, sessions: async_sessionmaker, invoices: InvoiceStore) -> None:
        self._sessions = sessions
        self._invoices = invoices

    async def balances(self, customer_id: str) -> list[CurrencyBalance]:
        """One balance per currency the customer was billed in, by currency code."""
        query = sa.select(
            invoices.c.kind,
            invoices.c.status,
            invoices.c.currency,
            invoices.c.total,
            invoices.c.amount_paid,
        ).where(invoices.c.customer_id == customer_id, counted())
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        # Summed here, not with SQL SUM: amounts are stored as exact decimal text.
        tallies: dict[str, _Tally] = defaultdict(_Tally)
        for row in rows:
            tally = tallies[row.currency]
            paid = row.amount_paid or ZERO
            tally.paid += paid
            if row.kind in RECEIVABLE_KINDS:
                tally.invoiced += row.total
                if row.status != "void" and row.total - paid > 0:
                    tally.open_documents += 1
            else:
                tally.credited += row.total
        return [
            CurrencyBalance(
                currency=currency,
                invoiced=t.invoiced,
                credited=t.credited,
                paid=t.paid,
                open_balance=t.invoiced - t.credited - t.paid,
                open_documents=t.open_documents,
            )
            for currency, t in sorted(tallies.items())
        ]

    async def last_invoice(self, customer_id: str) -> IssuedDocument | None:
        """The issued invoice (not a memo) of the latest period; of several, the one
        issued last."""
        query = (
            sa.select(invoices.c.id, invoices.c.finalized_at)
            .where(invoices.c.customer_id == customer_id, invoices.c.kind == "invoice", issued())
            .order_by(
                invoices.c.period_start.desc(),
                invoices.c.finalized_at.desc(),
                invoices.c.id.desc(),
            )
            .limit(1)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        return IssuedDocument(invoice=await self._invoices.get(row.id), issued_at=row.finalized_at)

    async def payments(self, invoice_id: str) -> list[AppliedPayment]:
        """The payments applied to a document, in the order they were received."""
        query = (
            sa.select(invoice_payments)
            .where(invoice_payments.c.invoice_id == invoice_id)
            .order_by(invoice_payments.c.received_on, invoice_payments.c.payment_id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            AppliedPayment(
                id=row.payment_id,
                amount=row.amount,
                currency=row.currency,
                received_on=row.received_on,
                recorded_at=row.recorded_at,
            )
            for row in rows
        ]
