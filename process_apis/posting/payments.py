"""Payments flow back from the ERP: invoices become ``partially_paid`` and ``paid``.

The ERP is the system of record for cash: customers pay there (bank statement matching,
card processors). ``PaymentSync`` follows the ERP's payment list from a stored cursor
and applies each payment to the Meterline document it was posted with (the payment
carries the document's external_ref, which is the invoice id). Each payment is applied
once: its id is recorded with the invoice in the same transaction that moves the cursor
and the invoice's ``amount_paid``, so a crash between pages repeats nothing. Payments
against documents Meterline did not post are recorded as seen (so the cursor passes
them) and otherwise ignored."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.model import ErpPayment
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.audit import append
from process_apis.posting.cursors import move_cursor, read_cursor
from process_apis.tables import invoice_payments, invoices
from system_apis.erp.port import ErpPort

__all__ = ["PaymentSync", "payment_status"]

CURSOR = "erp_payments"


class PaymentSync:
    def __init__(self, sessions: async_sessionmaker, erp: ErpPort, *, page: int = 200) -> None:
        self._sessions = sessions
        self._erp = erp
        self._page = page

    async def sync(self) -> int:
        """Apply every payment recorded since the last sync; returns how many applied."""
        applied = 0
        while True:
            async with self._sessions() as session:
                after = await read_cursor(session, CURSOR)
            payments, has_more = await self._erp.list_payments(after=after, limit=self._page)
            if not payments:
                return applied
            async with self._sessions.begin() as session:
                for payment in payments:
                    applied += await _apply(session, payment)
                await move_cursor(session, CURSOR, payments[-1].id)
            if not has_more:
                return applied


def payment_status(total: Decimal, paid: Decimal | None) -> dict[str, Any]:
    """The ``status`` and ``paid_at`` of a posted document with ``paid`` recorded against
    its ``total``: posted (nothing paid), partially_paid, or paid."""
    paid = paid or Decimal(0)
    status = "posted" if paid <= 0 else "paid" if paid >= total else "partially_paid"
    return {"status": status, "paid_at": utcnow() if status == "paid" else None}


async def _apply(session: AsyncSession, payment: ErpPayment) -> int:
    invoice = (
        await session.execute(
            sa.select(invoices.c.id, invoices.c.status, invoices.c.total, invoices.c.amount_paid)
            .where(invoices.c.id == payment.document_external_ref)
            .with_for_update()
        )
    ).first()
    seen = await session.execute(
        insert_ignore(invoice_payments, session.bind.dialect.name, ["payment_id"]).values(
            payment_id=payment.id,
            invoice_id=invoice.id if invoice else None,
            amount=payment.amount,
            currency=payment.currency,
            received_on=payment.received_on,
            recorded_at=utcnow(),
        )
    )
    if invoice is None or seen.rowcount != 1:  # not ours, or applied already
        return 0
    paid = (invoice.amount_paid or Decimal(0)) + payment.amount
    values: dict[str, Any] = {"amount_paid": paid}
    # Only a posted document moves (lifecycle.ALLOWED); a payment the ERP recorded before
    # Meterline recorded the posting is kept in ``amount_paid``, and counts when it does
    # (``PostingService.mark_posted``).
    if invoice.status in ("posted", "partially_paid"):
        values.update(payment_status(invoice.total, paid))
    status = values.get("status", invoice.status)
    await session.execute(sa.update(invoices).where(invoices.c.id == invoice.id).values(values))
    await append(
        session,
        action=f"invoice.{status}" if status in ("paid", "partially_paid") else "invoice.payment",
        subject_type="invoice",
        subject_id=invoice.id,
        data={
            "payment_id": payment.id,
            "amount": str(payment.amount),
            "amount_paid": str(paid),
            "received_on": payment.received_on.isoformat(),
        },
        actor="erp",
    )
    return 1
