"""Invoice persistence: numbering, writing a document with its lines and its outbox row
in one transaction, and reading documents back as canonical ``Invoice`` Structs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import errors
from canonical.model import Invoice, InvoiceLine, Subscription, TaxLine
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.paging import equal_to, fetch_page
from process_apis.tables import invoice_lines, invoice_numbers, invoices, postings

__all__ = [
    "InvoiceStore",
    "next_invoice_number",
    "next_invoice_numbers",
    "outbox_row",
    "write_invoice",
    "write_invoices",
    "write_lines",
]


async def next_invoice_number(
    session: AsyncSession, legal_entity_id: str, year: int, series: str = "INV"
) -> str:
    """Gapless per legal entity, year and series, as tax authorities expect
    (``INV-<LE>-2026-000042``; credit memos ``CN-...``, debit memos ``DN-...``).

    The UPDATE takes the row lock, so concurrent runs never share a number."""
    return (await next_invoice_numbers(session, legal_entity_id, year, 1, series))[0]


async def next_invoice_numbers(
    session: AsyncSession, legal_entity_id: str, year: int, count: int, series: str = "INV"
) -> list[str]:
    """``count`` consecutive numbers of ``next_invoice_number``'s series, taken by one
    UPDATE (a billing run numbers a batch of invoices at once)."""
    entity = legal_entity_id.removeprefix("le_").upper()[:12]
    if series != "INV":  # each series counts on its own
        legal_entity_id = f"{legal_entity_id}/{series}"
    await session.execute(
        insert_ignore(
            invoice_numbers, session.bind.dialect.name, ["legal_entity_id", "year"]
        ).values(legal_entity_id=legal_entity_id, year=year, last_number=0)
    )
    number = (
        await session.execute(
            sa.update(invoice_numbers)
            .where(
                invoice_numbers.c.legal_entity_id == legal_entity_id,
                invoice_numbers.c.year == year,
            )
            .values(last_number=invoice_numbers.c.last_number + count)
            .returning(invoice_numbers.c.last_number)
        )
    ).scalar_one()
    return [f"{series}-{entity}-{year}-{n:06d}" for n in range(number - count + 1, number + 1)]


async def write_invoice(
    session: AsyncSession, invoice: Invoice, line_event_types: list[str | None]
) -> None:
    """Insert the document, its lines and a pending ERP posting (the outbox row)."""
    await write_invoices(session, [(invoice, line_event_types)])


async def write_invoices(
    session: AsyncSession, documents: list[tuple[Invoice, list[str | None]]]
) -> None:
    """``write_invoice`` for many documents at once: three multi-row INSERTs, however
    many documents (a billing run writes a batch per transaction)."""
    if not documents:
        return
    now = utcnow()
    await session.execute(invoices.insert(), [_document(invoice, now) for invoice, _ in documents])
    await write_lines(session, documents)
    # Drafts (a grace window) reach the outbox when they are finalized.
    outbox = [
        outbox_row(invoice.id, invoice.correlation_id, now)
        for invoice, _ in documents
        if invoice.status != "draft"
    ]
    if outbox:
        await session.execute(postings.insert(), outbox)


def outbox_row(invoice_id: str, correlation_id: str | None, now: datetime) -> dict:
    """A document's pending ERP posting: the outbox worker posts it."""
    return {
        "invoice_id": invoice_id,
        "status": "pending",
        "attempts": 0,
        "correlation_id": correlation_id,
        "updated_at": now,
    }


async def write_lines(
    session: AsyncSession, documents: list[tuple[Invoice, list[str | None]]]
) -> None:
    """The lines of ``documents`` (written, or a draft's lines replaced)."""
    rows = [
        _line_values(invoice.id, position, line, event_type)
        for invoice, event_types in documents
        for position, (line, event_type) in enumerate(zip(invoice.lines, event_types, strict=True))
    ]
    if rows:
        await session.execute(invoice_lines.insert(), rows)


def _document(invoice: Invoice, now: datetime) -> dict:
    values = {
        f: getattr(invoice, f)
        for f in (
            "id",
            "number",
            "customer_id",
            "subscription_id",
            "legal_entity_id",
            "currency",
            "period_start",
            "period_end",
            "status",
            "subtotal",
            "tax_total",
            "total",
            "run_id",
            "correlation_id",
            "erp_document_id",
            "created_at",
        )
    }
    return values | {
        "kind": invoice.kind,
        "corrects_invoice_id": invoice.corrects_invoice_id,
        "finalized_at": now if invoice.status == "finalized" else None,
    }


def _line_values(invoice_id: str, position: int, line: InvoiceLine, event_type: str | None) -> dict:
    return {
        "id": line.id,
        "invoice_id": invoice_id,
        "position": position,
        "charge_code": line.charge_code,
        "kind": line.kind,
        "description": line.description,
        "item_code": line.item_code,
        "meter_code": line.meter_code,
        "event_type": event_type,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "amount": line.amount,
        "tax_rate": line.tax.rate,
        "tax_amount": line.tax.amount,
        "tax_jurisdiction": line.tax.jurisdiction,
        "tax_kind": line.tax.kind,
        "tax_note": line.tax.note,
        "event_count": line.event_count,
        "service_start": line.service_start,
        "service_end": line.service_end,
    }


def _line(row) -> InvoiceLine:
    return InvoiceLine(
        id=row.id,
        charge_code=row.charge_code,
        kind=row.kind,
        description=row.description,
        item_code=row.item_code,
        meter_code=row.meter_code,
        quantity=row.quantity,
        unit_price=row.unit_price,
        amount=row.amount,
        tax=TaxLine(
            rate=row.tax_rate,
            amount=row.tax_amount,
            jurisdiction=row.tax_jurisdiction,
            kind=row.tax_kind,
            note=row.tax_note,
        ),
        event_count=row.event_count,
        service_start=row.service_start,
        service_end=row.service_end,
    )


def _invoice(row, lines: list[InvoiceLine]) -> Invoice:
    return Invoice(
        id=row.id,
        number=row.number,
        customer_id=row.customer_id,
        subscription_id=row.subscription_id,
        legal_entity_id=row.legal_entity_id,
        currency=row.currency,
        period_start=row.period_start,
        period_end=row.period_end,
        status=row.status,
        lines=lines,
        subtotal=row.subtotal,
        tax_total=row.tax_total,
        total=row.total,
        run_id=row.run_id,
        correlation_id=row.correlation_id,
        erp_document_id=row.erp_document_id,
        created_at=row.created_at,
        kind=row.kind,
        corrects_invoice_id=row.corrects_invoice_id,
        amount_paid=row.amount_paid or Decimal(0),
        void_reason=row.void_reason,
    )


async def _with_lines(session: AsyncSession, rows) -> list[Invoice]:
    """The invoices of ``rows`` with their lines, read in one query for all of them."""
    if not rows:
        return []
    found = await session.execute(
        sa.select(invoice_lines)
        .where(invoice_lines.c.invoice_id.in_([r.id for r in rows]))
        .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)
    )
    by_invoice: dict[str, list[InvoiceLine]] = defaultdict(list)
    for r in found:
        by_invoice[r.invoice_id].append(_line(r))
    return [_invoice(r, by_invoice[r.id]) for r in rows]


class InvoiceStore:
    """Reads of invoices for the process routes and the Experience APIs."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def get(self, invoice_id: str) -> Invoice:
        async with self._sessions() as session:
            row = (
                await session.execute(sa.select(invoices).where(invoices.c.id == invoice_id))
            ).first()
            if row is None:
                raise errors.NotFound(f"invoice {invoice_id} not found")
            return (await _with_lines(session, [row]))[0]

    async def of_subscription(
        self, subscription: Subscription, period_start: date
    ) -> list[Invoice]:
        """Every document billing ``subscription`` for the period starting on
        ``period_start`` that stands (not void), in id order: all of them, however many."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    sa.select(invoices)
                    .where(
                        invoices.c.customer_id == subscription.customer_id,
                        invoices.c.subscription_id == subscription.id,
                        invoices.c.period_start == period_start,
                        invoices.c.status != "void",
                    )
                    .order_by(invoices.c.id)
                )
            ).all()
            return await _with_lines(session, rows)

    async def many(self, invoice_ids: Collection[str]) -> list[Invoice]:
        """The invoices of ``invoice_ids`` that exist, in id order: two queries in all."""
        if not invoice_ids:
            return []
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    sa.select(invoices)
                    .where(invoices.c.id.in_(list(invoice_ids)))
                    .order_by(invoices.c.id)
                )
            ).all()
            return await _with_lines(session, rows)

    async def list(
        self,
        *,
        customer_id: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        statuses: Collection[str] | None = None,
        period_start: date | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> tuple[list[Invoice], bool]:
        """A page of invoices; ``statuses`` keeps those in any of the given statuses."""
        conditions = equal_to(
            invoices,
            customer_id=customer_id,
            run_id=run_id,
            status=status,
            period_start=period_start,
        )
        if statuses is not None:
            conditions.append(invoices.c.status.in_(list(statuses)))
        async with self._sessions() as session:
            rows, has_more = await fetch_page(
                session, invoices, conditions, limit=limit, starting_after=starting_after
            )
            return await _with_lines(session, rows), has_more
