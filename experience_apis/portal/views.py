"""The customer portal's view of invoices: what a customer reads, not how it was built."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from canonical.model import Base, Customer, Invoice, Page

__all__ = [
    "PortalInvoice",
    "PortalInvoiceList",
    "PortalInvoiceSummary",
    "PortalLine",
    "detail",
    "summary",
]


class PortalInvoiceSummary(Base):
    id: str
    number: str
    status: Literal["draft", "finalized", "posted", "paid", "void"]
    period: str  # YYYY-MM
    period_start: date
    period_end: date
    currency: str
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    issued_at: datetime


class PortalLine(Base):
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    tax_rate_percent: Decimal
    tax_amount: Decimal
    tax_note: str | None


class PortalCustomer(Base):
    id: str
    name: str
    billing_country: str


class PortalInvoice(PortalInvoiceSummary):
    customer: PortalCustomer
    lines: list[PortalLine]
    tax_notes: list[str]


class PortalInvoiceList(Page):
    data: list[PortalInvoiceSummary]


def _summary_fields(invoice: Invoice) -> dict:
    return {
        "id": invoice.id,
        "number": invoice.number,
        # A customer sees an invoice as issued once finalized; posting is internal.
        "status": invoice.status,
        "period": invoice.period_start.strftime("%Y-%m"),
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "tax_total": invoice.tax_total,
        "total": invoice.total,
        "issued_at": invoice.created_at,
    }


def summary(invoice: Invoice) -> PortalInvoiceSummary:
    return PortalInvoiceSummary(**_summary_fields(invoice))


def detail(invoice: Invoice, customer: Customer) -> PortalInvoice:
    notes = sorted({line.tax.note for line in invoice.lines if line.tax.note})
    return PortalInvoice(
        **_summary_fields(invoice),
        customer=PortalCustomer(
            id=customer.id, name=customer.name, billing_country=customer.billing_country
        ),
        lines=[
            PortalLine(
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                tax_rate_percent=(line.tax.rate * 100).normalize(),
                tax_amount=line.tax.amount,
                tax_note=line.tax.note,
            )
            for line in invoice.lines
        ],
        tax_notes=notes,
    )
