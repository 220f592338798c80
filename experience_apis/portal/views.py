"""The customer portal's view of documents: what a customer reads, not how it was built.

A customer sees invoices and the memos correcting them from finalization on, with what
is still due, the tax summary an invoice prints (one entry per rate and treatment), the
memos issued against it, the payments applied to it and, per usage line, the events
behind it."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from canonical.model import Base, Customer, DocumentKind, Invoice, Page
from canonical.money import total
from experience_apis.documents import document_fields, percent
from process_apis.invoices.queries import IssuedDocument, IssuedStatus
from process_apis.lineage.views import EventRef
from process_apis.receivables import AppliedPayment

__all__ = [
    "PortalCustomer",
    "PortalEvent",
    "PortalEventList",
    "PortalInvoice",
    "PortalInvoiceList",
    "PortalInvoiceSummary",
    "PortalLine",
    "PortalPayment",
    "PortalTax",
    "customer_view",
    "detail",
    "event_view",
    "summary",
]


class PortalInvoiceSummary(Base):
    id: str
    number: str
    kind: DocumentKind
    status: IssuedStatus  # customers see documents from finalization on
    period: str  # YYYY-MM
    period_start: date
    period_end: date
    currency: str
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    amount_paid: Decimal
    # Still to pay: 0 for credit memos (they owe the customer), void and paid documents.
    amount_due: Decimal
    issued_at: datetime
    # A memo: the document it corrects.
    corrects_invoice_id: str | None


class PortalLine(Base):
    id: str  # drill down: /invoices/{id}/lines/{line id}/events
    kind: Literal["usage", "recurring", "minimum"]
    description: str
    meter_code: str | None
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    tax_rate_percent: Decimal
    tax_amount: Decimal
    tax_note: str | None
    event_count: int  # source events behind a usage line


class PortalTax(Base):
    """One line of the tax summary: the lines taxed at one rate under one treatment."""

    rate_percent: Decimal
    kind: str  # domestic, reverse_charge, exempt, us_state, ...
    jurisdiction: str
    taxable_amount: Decimal
    tax_amount: Decimal
    note: str | None


class PortalPayment(Base):
    id: str
    amount: Decimal
    currency: str
    received_on: date


class PortalCustomer(Base):
    id: str
    name: str
    billing_country: str
    currency: str


class PortalInvoice(PortalInvoiceSummary):
    customer: PortalCustomer
    lines: list[PortalLine]
    taxes: list[PortalTax]
    tax_notes: list[str]
    void_reason: str | None
    memos: list[PortalInvoiceSummary]  # issued against this document, oldest first
    payments: list[PortalPayment]  # applied to it, in the order received


class PortalInvoiceList(Page):
    data: list[PortalInvoiceSummary]


class PortalEvent(Base):
    seq: int  # the cursor: pass the last one as starting_after
    id: str
    source: str
    event_type: str
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]


class PortalEventList(Page):
    data: list[PortalEvent]


def summary(document: IssuedDocument) -> PortalInvoiceSummary:
    return PortalInvoiceSummary(**document_fields(document))


def customer_view(customer: Customer) -> PortalCustomer:
    return PortalCustomer(
        id=customer.id,
        name=customer.name,
        billing_country=customer.billing_country,
        currency=customer.currency,
    )


def _taxes(invoice: Invoice) -> list[PortalTax]:
    groups: dict[tuple, list] = defaultdict(list)
    for line in invoice.lines:
        tax = line.tax
        groups[tax.rate, tax.kind, tax.jurisdiction, tax.note].append(line)
    return [
        PortalTax(
            rate_percent=percent(rate),
            kind=kind,
            jurisdiction=jurisdiction,
            taxable_amount=total((line.amount for line in lines), invoice.currency),
            tax_amount=total((line.tax.amount for line in lines), invoice.currency),
            note=note,
        )
        for (rate, kind, jurisdiction, note), lines in groups.items()
    ]


def detail(
    document: IssuedDocument,
    customer: Customer,
    memos: list[IssuedDocument],
    payments: list[AppliedPayment],
) -> PortalInvoice:
    invoice = document.invoice
    return PortalInvoice(
        **document_fields(document),
        customer=customer_view(customer),
        lines=[
            PortalLine(
                id=line.id,
                kind=line.kind,
                description=line.description,
                meter_code=line.meter_code,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                tax_rate_percent=percent(line.tax.rate),
                tax_amount=line.tax.amount,
                tax_note=line.tax.note,
                event_count=line.event_count,
            )
            for line in invoice.lines
        ],
        taxes=_taxes(invoice),
        tax_notes=sorted({line.tax.note for line in invoice.lines if line.tax.note}),
        void_reason=invoice.void_reason,
        memos=[summary(memo) for memo in memos],
        payments=[
            PortalPayment(id=p.id, amount=p.amount, currency=p.currency, received_on=p.received_on)
            for p in payments
        ],
    )


def event_view(event: EventRef) -> PortalEvent:
    return PortalEvent(
        seq=event.seq,
        id=event.id,
        source=event.source,
        event_type=event.event_type,
        timestamp=event.timestamp,
        received_at=event.received_at,
        properties=event.properties,
    )
