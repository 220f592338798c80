"""AR documents of the reference ERP: input checks, writing a document with its journal
entry, and reading documents back with their journals (the entry that posted each one,
not the entries of payments against it) and what they have been paid."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.ids import new_id
from canonical.model import ErpDocument, ErpInvoice, JournalEntry, JournalLine
from canonical.money import is_currency, round_money
from canonical.time import utcnow
from system_apis.erp.reference.journal import build_journal
from system_apis.erp.reference.tables import (
    document_lines,
    documents,
    journal_entries,
    journal_lines,
    legal_entities,
    payments,
)

__all__ = [
    "check_booking",
    "check_invoice",
    "check_rounded",
    "check_text",
    "insert_document",
    "is_external_ref",
    "load_documents",
    "require_legal_entity",
]

_EXTERNAL_REF = re.compile(r"[!-~]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_external_ref(value: str) -> bool:
    return _EXTERNAL_REF.fullmatch(value) is not None


def check_text(value: str, field: str, max_length: int, *, min_length: int = 1) -> None:
    if not min_length <= len(value) <= max_length or _CONTROL.search(value):
        raise InvalidRequest(
            f"{field} must be {min_length}-{max_length} printable characters", code="invalid_field"
        )


def check_booking(external_ref: str, correlation_id: str | None, currency: str, lines) -> None:
    """What every booking (a document, a revenue journal) needs before the database: a
    printable external_ref, a known currency, at least one line."""
    if not is_external_ref(external_ref):
        raise InvalidRequest(
            "external_ref must be 1-128 printable ASCII characters", code="invalid_field"
        )
    if correlation_id is not None:
        check_text(correlation_id, "correlation_id", 128)
    if not is_currency(currency):
        raise BusinessRuleViolation(f"unknown currency {currency!r}", code="unknown_currency")
    if not lines:
        raise InvalidRequest("a booking needs at least one line", code="no_lines")


def check_rounded(amount: Decimal, currency: str, line: int) -> None:
    if amount != round_money(amount, currency):
        # A rule across fields (the currency's minor unit): 422, not 400.
        raise BusinessRuleViolation(
            f"line {line}: {amount} is not rounded to the {currency} minor unit",
            code="amount_not_rounded",
        )


async def require_legal_entity(s: AsyncSession, entity_id: str) -> None:
    """Refuse (``unknown_legal_entity``) a booking for a legal entity the ERP lacks."""
    known = (
        is_external_ref(entity_id)
        and (
            await s.execute(sa.select(legal_entities.c.id).where(legal_entities.c.id == entity_id))
        ).first()
    )
    if not known:
        raise BusinessRuleViolation(
            f"unknown legal entity {entity_id[:80]}", code="unknown_legal_entity"
        )


def check_invoice(invoice: ErpInvoice) -> None:
    """What needs no database: shape, currency and amounts in whole minor units."""
    check_booking(invoice.external_ref, invoice.correlation_id, invoice.currency, invoice.lines)
    check_text(invoice.customer_name, "customer_name", 200)
    for n, line in enumerate(invoice.lines, start=1):
        check_text(line.description, f"line {n} description", 500, min_length=0)
        for amount in (line.amount, line.tax_amount):
            if not amount.is_finite() or amount < 0:
                raise InvalidRequest(
                    f"line {n}: amounts must be zero or positive", code="negative_amount"
                )
            check_rounded(amount, invoice.currency, n)


async def insert_document(
    s: AsyncSession, invoice: ErpInvoice, accounts: dict[str, str], correlation_id: str | None
) -> ErpDocument:
    """Writes the document, its lines and its balanced journal entry (``accounts`` maps
    each line's item code to its revenue account)."""
    cur = invoice.currency
    nets = [round_money(line.amount, cur) for line in invoice.lines]
    taxes = [round_money(line.tax_amount, cur) for line in invoice.lines]
    net_total = round_money(sum(nets, Decimal(0)), cur)
    tax_total = round_money(sum(taxes, Decimal(0)), cur)
    journal = build_journal(
        invoice.kind,
        cur,
        [
            (accounts[line.item_code], net, tax)
            for line, net, tax in zip(invoice.lines, nets, taxes, strict=True)
        ],
    )
    doc_id, entry_id = new_id("doc"), new_id("jnl")
    document = ErpDocument(
        id=doc_id,
        external_ref=invoice.external_ref,
        kind=invoice.kind,
        customer_id=invoice.customer_id,
        legal_entity_id=invoice.legal_entity_id,
        currency=cur,
        posting_date=invoice.posting_date,
        net_total=net_total,
        tax_total=tax_total,
        total=net_total + tax_total,
        journal=JournalEntry(
            id=entry_id,
            document_id=doc_id,
            posting_date=invoice.posting_date,
            currency=cur,
            lines=journal,
        ),
        correlation_id=correlation_id,
        created_at=utcnow(),
        amount_paid=round_money(Decimal(0), cur),
    )
    # The document row is the answer's fields but the journal (its own tables).
    row = msgspec.structs.asdict(document)
    del row["journal"]
    await s.execute(sa.insert(documents).values(**row))
    await s.execute(
        sa.insert(document_lines),
        [
            {
                "document_id": doc_id,
                "line_no": n,
                "item_code": line.item_code,
                "description": line.description,
                "amount": net,
                "tax_amount": tax,
            }
            for n, (line, net, tax) in enumerate(zip(invoice.lines, nets, taxes, strict=True), 1)
        ],
    )
    await s.execute(
        sa.insert(journal_entries).values(
            id=entry_id,
            document_id=doc_id,
            legal_entity_id=invoice.legal_entity_id,
            posting_date=invoice.posting_date,
            currency=cur,
            correlation_id=correlation_id,
            created_at=document.created_at,
        )
    )
    if journal:
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
                for n, line in enumerate(journal, 1)
            ],
        )
    return document


async def load_documents(s: AsyncSession, *where, limit: int | None = None) -> list[ErpDocument]:
    """Documents matching ``where``, sorted by id, each with its journal entry."""
    query = sa.select(documents).where(*where).order_by(documents.c.id)
    if limit is not None:
        query = query.limit(limit)
    rows = (await s.execute(query)).all()
    if not rows:
        return []
    # A payment's entry names the document it settles too: the posting entry is the one
    # no payment references.
    found = await s.execute(
        sa.select(journal_entries)
        .outerjoin(payments, payments.c.journal_entry_id == journal_entries.c.id)
        .where(journal_entries.c.document_id.in_([r.id for r in rows]), payments.c.id.is_(None))
    )
    entries = {e.document_id: e for e in found}
    lines: dict[str, list[JournalLine]] = defaultdict(list)
    found = await s.execute(
        sa.select(journal_lines)
        .where(journal_lines.c.entry_id.in_([e.id for e in entries.values()]))
        .order_by(journal_lines.c.entry_id, journal_lines.c.line_no)
    )
    for line in found:
        lines[line.entry_id].append(
            JournalLine(account=line.account, debit=line.debit, credit=line.credit)
        )
    return [_document(r, entries[r.id], lines[entries[r.id].id]) for r in rows]


def _document(row, entry, lines: list[JournalLine]) -> ErpDocument:
    return ErpDocument(
        id=row.id,
        external_ref=row.external_ref,
        kind=row.kind,
        customer_id=row.customer_id,
        legal_entity_id=row.legal_entity_id,
        currency=row.currency,
        posting_date=row.posting_date,
        net_total=row.net_total,
        tax_total=row.tax_total,
        total=row.total,
        journal=JournalEntry(
            id=entry.id,
            document_id=row.id,
            posting_date=entry.posting_date,
            currency=entry.currency,
            lines=lines,
        ),
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        amount_paid=row.amount_paid,
    )
