"""Customer payments in the reference ERP: recording one against an AR document, with its
GL entry, and reading them back in the order they were recorded.

Recording is idempotent by ``external_ref`` (the bank transaction id, say): the same
payment again returns the stored one; another payment under the same ref is a
``Conflict``. Payments are recorded one at a time: each transaction first moves the
single payment counter row forward (``tables.payment_counter``), which both orders the
payments by commit (``seq``, the order of ``list_payments``) and serialises the open
amount checks, so concurrent payments can never together overpay a document.

Rules, after the input's shape (``check_payment``): the document must exist
(``NotFound``), be an invoice or a debit memo (a credit memo owes the customer:
``document_not_payable``), be in the payment's currency (``currency_mismatch``) and still
owe at least the amount (``overpayment``); the period of ``received_on`` must be open in
the document's legal entity (``period_closed``).
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation
from canonical.errors import BusinessRuleViolation, Conflict, InvalidRequest, NotFound
from canonical.ids import new_id
from canonical.model import ErpPayment, ErpPaymentIn, JournalEntry, JournalLine
from canonical.money import is_currency, round_money
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from system_apis.erp.reference.documents import check_text, is_external_ref
from system_apis.erp.reference.journal import build_payment_journal
from system_apis.erp.reference.periods import require_open_period
from system_apis.erp.reference.tables import (
    PAYMENT_COUNTER_ID,
    documents,
    journal_entries,
    journal_lines,
    payment_counter,
    payments,
)

__all__ = ["check_payment", "list_payments", "load_payments", "record_payment"]

# Fields that make two payments under one external_ref the same payment.
_SAME_PAYMENT = ("document_id", "amount", "currency", "received_on", "method", "reference")


class _Recorded(Exception):
    """Raised inside the recording transaction when the payment turns out to be there
    already, so the counter's move is rolled back rather than committed as a gap."""

    def __init__(self, payment: ErpPayment) -> None:
        self.payment = payment


def check_payment(payment: ErpPaymentIn) -> None:
    """What needs no database: shape, currency and an amount in whole minor units."""
    if not is_external_ref(payment.external_ref):
        raise InvalidRequest(
            "external_ref must be 1-128 printable ASCII characters", code="invalid_field"
        )
    for field, max_length in (("method", 64), ("reference", 200), ("correlation_id", 128)):
        value = getattr(payment, field)
        if value is not None:
            check_text(value, field, max_length)
    if not is_currency(payment.currency):
        raise BusinessRuleViolation(
            f"unknown currency {payment.currency!r}", code="unknown_currency"
        )
    amount = payment.amount
    if not amount.is_finite() or amount <= 0:
        raise InvalidRequest("a payment amount must be positive", code="invalid_field")
    if amount != round_money(amount, payment.currency):
        raise BusinessRuleViolation(
            f"{amount} is not rounded to the {payment.currency} minor unit",
            code="amount_not_rounded",
        )


async def record_payment(sessions: async_sessionmaker, payment: ErpPaymentIn) -> ErpPayment:
    check_payment(payment)
    async with sessions() as s:
        existing = await _find(s, payment.external_ref)
    if existing is not None:
        return _replay(existing, payment)
    try:
        async with sessions.begin() as s:
            seq = await _next_seq(s)
            # Under the counter's lock: a payment of the same ref recorded meanwhile is
            # seen here, before its amount could be mistaken for an overpayment.
            existing = await _find(s, payment.external_ref)
            if existing is not None:
                raise _Recorded(existing)
            return await _insert(s, seq, payment)
    except _Recorded as recorded:
        return _replay(recorded.payment, payment)


async def list_payments(
    sessions: async_sessionmaker, *, after: str | None = None, limit: int = 100
) -> tuple[list[ErpPayment], bool]:
    if limit < 1:
        raise InvalidRequest("limit must be at least 1", code="invalid_field")
    async with sessions() as s:
        where = []
        if after is not None:
            seq = None
            if is_external_ref(after):
                seq = (
                    await s.execute(sa.select(payments.c.seq).where(payments.c.id == after))
                ).scalar()
            if seq is None:
                raise NotFound(f"payment {after[:80]} not found", code="payment_not_found")
            where.append(payments.c.seq > seq)
        found = await load_payments(s, *where, limit=limit + 1)
    return found[:limit], len(found) > limit


async def _next_seq(s: AsyncSession) -> int:
    """Moves the payment counter forward (a write, first thing in the transaction: it
    holds the counter until commit) and returns the new seq."""
    bump = (
        sa.update(payment_counter)
        .where(payment_counter.c.id == PAYMENT_COUNTER_ID)
        .values(seq=payment_counter.c.seq + 1)
    )
    if (await s.execute(bump)).rowcount == 0:  # a schema made without the migration's row
        await s.execute(
            insert_ignore(payment_counter, s.bind.dialect.name, ["id"]).values(
                id=PAYMENT_COUNTER_ID, seq=0
            )
        )
        await s.execute(bump)
    query = sa.select(payment_counter.c.seq).where(payment_counter.c.id == PAYMENT_COUNTER_ID)
    return (await s.execute(query)).scalar_one()


async def _insert(s: AsyncSession, seq: int, payment: ErpPaymentIn) -> ErpPayment:
    doc = None
    if is_external_ref(payment.document_id):
        query = sa.select(documents).where(documents.c.id == payment.document_id)
        doc = (await s.execute(query.with_for_update())).first()
    if doc is None:
        raise NotFound(f"document {payment.document_id[:80]} not found", code="document_not_found")
    if doc.kind == "credit_memo":
        raise BusinessRuleViolation(
            f"document {doc.id} is a credit memo: it owes the customer, nothing is paid against it",
            code="document_not_payable",
        )
    cur = doc.currency
    if payment.currency != cur:
        raise BusinessRuleViolation(
            f"payment currency {payment.currency} differs from {cur}, the currency of "
            f"document {doc.id}",
            code="currency_mismatch",
        )
    amount = round_money(payment.amount, cur)
    open_amount = doc.total - doc.amount_paid
    if amount > open_amount:
        raise BusinessRuleViolation(
            f"payment of {amount} {cur} exceeds the open amount of document {doc.id} "
            f"({open_amount} {cur} of {doc.total} {cur})",
            code="overpayment",
        )
    await require_open_period(s, doc.legal_entity_id, payment.received_on)

    lines = build_payment_journal(cur, amount)
    payment_id, entry_id, now = new_id("pay"), new_id("jnl"), utcnow()
    correlation_id = payment.correlation_id or correlation.current()
    paid = round_money(doc.amount_paid + amount, cur)
    await s.execute(
        sa.insert(journal_entries).values(
            id=entry_id,
            document_id=doc.id,
            legal_entity_id=doc.legal_entity_id,
            posting_date=payment.received_on,
            currency=cur,
            correlation_id=correlation_id,
            created_at=now,
        )
    )
    await s.execute(
        sa.insert(journal_lines),
        [
            {
                "entry_id": entry_id,
                "line_no": n,
                "account": line.account,
                "debit": line.debit,
                "credit": line.credit,
            }
            for n, line in enumerate(lines, 1)
        ],
    )
    row = {
        "id": payment_id,
        "seq": seq,
        "external_ref": payment.external_ref,
        "document_id": doc.id,
        "amount": amount,
        "currency": cur,
        "received_on": payment.received_on,
        "method": payment.method,
        "reference": payment.reference,
        "document_amount_paid": paid,
        "journal_entry_id": entry_id,
        "correlation_id": correlation_id,
        "created_at": now,
    }
    await s.execute(sa.insert(payments).values(**row))
    await s.execute(sa.update(documents).where(documents.c.id == doc.id).values(amount_paid=paid))
    return _payment(row, doc.external_ref, doc.customer_id, doc.legal_entity_id, doc.total, lines)


async def _find(s: AsyncSession, external_ref: str) -> ErpPayment | None:
    found = await load_payments(s, payments.c.external_ref == external_ref)
    return found[0] if found else None


def _replay(stored: ErpPayment, payment: ErpPaymentIn) -> ErpPayment:
    """The stored payment when ``payment`` is the same one again; else ``Conflict``."""
    differs = [f for f in _SAME_PAYMENT if getattr(stored, f) != getattr(payment, f)]
    if differs:
        raise Conflict(
            f"external_ref {payment.external_ref} was already recorded as payment "
            f"{stored.id} with another {', '.join(differs)}",
            code="external_ref_conflict",
        )
    return stored


async def load_payments(s: AsyncSession, *where, limit: int | None = None) -> list[ErpPayment]:
    """Payments matching ``where`` in the order they were recorded, with their entries."""
    query = (
        sa.select(
            payments,
            documents.c.external_ref.label("document_external_ref"),
            documents.c.customer_id,
            documents.c.legal_entity_id,
            documents.c.total.label("document_total"),
        )
        .join(documents, documents.c.id == payments.c.document_id)
        .where(*where)
        .order_by(payments.c.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await s.execute(query)).all()
    if not rows:
        return []
    lines: dict[str, list[JournalLine]] = {r.journal_entry_id: [] for r in rows}
    found = await s.execute(
        sa.select(journal_lines)
        .where(journal_lines.c.entry_id.in_(list(lines)))
        .order_by(journal_lines.c.entry_id, journal_lines.c.line_no)
    )
    for line in found:
        lines[line.entry_id].append(
            JournalLine(account=line.account, debit=line.debit, credit=line.credit)
        )
    return [
        _payment(
            r._asdict(),
            r.document_external_ref,
            r.customer_id,
            r.legal_entity_id,
            r.document_total,
            lines[r.journal_entry_id],
        )
        for r in rows
    ]


def _payment(
    row: dict,
    document_external_ref: str,
    customer_id: str,
    legal_entity_id: str,
    document_total: Decimal,
    lines: list[JournalLine],
) -> ErpPayment:
    return ErpPayment(
        id=row["id"],
        external_ref=row["external_ref"],
        document_id=row["document_id"],
        document_external_ref=document_external_ref,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
        amount=row["amount"],
        currency=row["currency"],
        received_on=row["received_on"],
        method=row["method"],
        reference=row["reference"],
        document_total=document_total,
        document_amount_paid=row["document_amount_paid"],
        journal=JournalEntry(
            id=row["journal_entry_id"],
            document_id=row["document_id"],
            posting_date=row["received_on"],
            currency=row["currency"],
            lines=lines,
        ),
        correlation_id=row["correlation_id"],
        created_at=row["created_at"],
    )
