"""Invoice persistence: numbering, writing a document with its lines and its outbox row
in one transaction, and reading documents back as canonical ``Invoice`` Structs."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import errors
from canonical.model import Invoice, InvoiceLine, TaxLine
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.tables import invoice_lines, invoice_numbers, invoices, postings

__all__ = ["InvoiceStore", "next_invoice_number", "write_invoice"]


async def next_invoice_number(session: AsyncSession, legal_entity_id: str, year: int) -> str:
    """Gapless per legal entity and year, as tax authorities expect (``INV-<LE>-2026-000042``).

    The UPDATE takes the row lock, so concurrent runs never share a number."""
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
            .values(last_number=invoice_numbers.c.last_number + 1)
            .returning(invoice_numbers.c.last_number)
        )
    ).scalar_one()
    entity = legal_entity_id.removeprefix("le_").upper()[:12]
    return f"INV-{entity}-{year}-{number:06d}"


async def write_invoice(
    session: AsyncSession, invoice: Invoice, line_event_types: list[str | None]
) -> None:
    """Insert the document, its lines and a pending ERP posting (the outbox row)."""
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
    now = utcnow()
    await session.execute(invoices.insert().values(**values, kind="invoice", finalized_at=now))
    await session.execute(
        invoice_lines.insert(),
        [
            {
                "id": line.id,
                "invoice_id": invoice.id,
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
            }
            for position, (line, event_type) in enumerate(
                zip(invoice.lines, line_event_types, strict=True)
            )
        ],
    )
    await session.execute(
        postings.insert().values(
            invoice_id=invoice.id,
            status="pending",
            attempts=0,
            correlation_id=invoice.correlation_id,
            updated_at=now,
        )
    )


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
    )


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
            lines = (
                await session.execute(
                    sa.select(invoice_lines)
                    .where(invoice_lines.c.invoice_id == invoice_id)
                    .order_by(invoice_lines.c.position)
                )
            ).all()
        return _invoice(row, [_line(r) for r in lines])

    async def line_lineage(self, invoice_id: str, line_id: str) -> tuple[Invoice, str | None]:
        """The invoice and the event type behind one of its lines."""
        invoice = await self.get(invoice_id)
        async with self._sessions() as session:
            event_type = (
                await session.execute(
                    sa.select(invoice_lines.c.event_type).where(
                        invoice_lines.c.invoice_id == invoice_id, invoice_lines.c.id == line_id
                    )
                )
            ).first()
        if event_type is None:
            raise errors.NotFound(f"line {line_id} not found on invoice {invoice_id}")
        return invoice, event_type[0]

    async def list(
        self,
        *,
        customer_id: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        period_start: date | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> tuple[list[Invoice], bool]:
        query = sa.select(invoices).order_by(invoices.c.id).limit(limit + 1)
        for column, value in (
            (invoices.c.customer_id, customer_id),
            (invoices.c.run_id, run_id),
            (invoices.c.status, status),
            (invoices.c.period_start, period_start),
        ):
            if value is not None:
                query = query.where(column == value)
        if starting_after:
            query = query.where(invoices.c.id > starting_after)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
            page = rows[:limit]
            ids = [r.id for r in page]
            line_rows = (
                (
                    await session.execute(
                        sa.select(invoice_lines)
                        .where(invoice_lines.c.invoice_id.in_(ids))
                        .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)
                    )
                ).all()
                if ids
                else []
            )
        by_invoice: dict[str, list[InvoiceLine]] = {}
        for r in line_rows:
            by_invoice.setdefault(r.invoice_id, []).append(_line(r))
        return [_invoice(r, by_invoice.get(r.id, [])) for r in page], len(rows) > limit
