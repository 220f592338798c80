"""The partner's view of its customers' billing: what a reseller reads, not how it was
built (no runs, no lineage, no other tenant's ids). The only ERP id it shows is a
payment's (``PartnerPayment.id``, see ADR 18)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from canonical.model import Aggregation, Base, Customer, DocumentKind, Invoice, Page, TaxStatus
from canonical.money import ZERO
from canonical.time import Period
from experience_apis.documents import document_fields
from process_apis.invoices.queries import IssuedDocument, IssuedStatus
from process_apis.receivables import AppliedPayment, CurrencyBalance, amount_due
from process_apis.usage.summaries import MeterUsageSeries

__all__ = [
    "PartnerBalance",
    "PartnerBillingSummary",
    "PartnerCustomer",
    "PartnerCustomerList",
    "PartnerInvoice",
    "PartnerInvoiceList",
    "PartnerInvoiceSummary",
    "PartnerMeterUsage",
    "PartnerPayment",
    "PartnerUsageSummary",
    "billing_summary",
    "customer_view",
    "invoice_detail",
    "invoice_summary",
    "usage_summary",
]

PaymentStatus = Literal["unpaid", "partially_paid", "paid", "nothing_due", "credit", "void"]


class PartnerCustomer(Base):
    id: str
    name: str
    billing_country: str
    currency: str
    tax_status: TaxStatus


class PartnerCustomerList(Page):
    data: list[PartnerCustomer]


class PartnerInvoiceSummary(Base):
    id: str
    number: str
    customer_id: str
    kind: DocumentKind
    status: IssuedStatus
    # The document a memo corrects (of the same customer).
    corrects_invoice_id: str | None
    period: str  # YYYY-MM
    period_start: date
    period_end: date  # exclusive
    currency: str
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    amount_paid: Decimal
    amount_due: Decimal
    payment_status: PaymentStatus
    issued_at: datetime


class PartnerInvoiceList(Page):
    data: list[PartnerInvoiceSummary]


class PartnerPayment(Base):
    id: str
    amount: Decimal
    currency: str
    received_on: date


class PartnerInvoice(PartnerInvoiceSummary):
    customer_name: str
    payments: list[PartnerPayment]


class PartnerBalance(Base):
    currency: str
    invoiced: Decimal
    credited: Decimal
    paid: Decimal
    open_balance: Decimal
    open_documents: int


class PartnerBillingSummary(Base):
    customer_id: str
    as_of: datetime
    balances: list[PartnerBalance]  # one per currency billed, by currency code
    last_invoice: PartnerInvoiceSummary | None


class PartnerMeterUsage(Base):
    meter_code: str
    name: str
    unit: str
    aggregation: Aggregation
    quantity: Decimal
    event_count: int
    invoiced_quantity: Decimal | None


class PartnerUsageSummary(Base):
    customer_id: str
    period: str  # YYYY-MM
    period_start: date
    period_end: date  # exclusive
    # Usage measured up to this time; while the period runs, quantities are so far.
    as_of: datetime
    in_progress: bool
    meters: list[PartnerMeterUsage]


def customer_view(customer: Customer) -> PartnerCustomer:
    return PartnerCustomer(
        id=customer.id,
        name=customer.name,
        billing_country=customer.billing_country,
        currency=customer.currency,
        tax_status=customer.tax_status,
    )


def payment_status(invoice: Invoice) -> PaymentStatus:
    if invoice.status == "void":
        return "void"
    if invoice.kind == "credit_memo":
        return "credit"
    if invoice.total <= ZERO:
        return "nothing_due"
    if amount_due(invoice) == ZERO:
        return "paid"
    return "partially_paid" if invoice.amount_paid > ZERO else "unpaid"


def _summary_fields(document: IssuedDocument) -> dict:
    return {
        **document_fields(document),
        "customer_id": document.invoice.customer_id,
        "payment_status": payment_status(document.invoice),
    }


def invoice_summary(document: IssuedDocument) -> PartnerInvoiceSummary:
    return PartnerInvoiceSummary(**_summary_fields(document))


def invoice_detail(
    document: IssuedDocument, customer: Customer, payments: list[AppliedPayment]
) -> PartnerInvoice:
    return PartnerInvoice(
        **_summary_fields(document),
        customer_name=customer.name,
        payments=[
            PartnerPayment(id=p.id, amount=p.amount, currency=p.currency, received_on=p.received_on)
            for p in payments
        ],
    )


def billing_summary(
    customer_id: str,
    as_of: datetime,
    balances: list[CurrencyBalance],
    last_invoice: IssuedDocument | None,
) -> PartnerBillingSummary:
    return PartnerBillingSummary(
        customer_id=customer_id,
        as_of=as_of,
        balances=[
            PartnerBalance(
                currency=b.currency,
                invoiced=b.invoiced,
                credited=b.credited,
                paid=b.paid,
                open_balance=b.open_balance,
                open_documents=b.open_documents,
            )
            for b in balances
        ],
        last_invoice=invoice_summary(last_invoice) if last_invoice else None,
    )


def usage_summary(
    customer_id: str, period: Period, as_of: datetime, usage: list[MeterUsageSeries]
) -> PartnerUsageSummary:
    return PartnerUsageSummary(
        customer_id=customer_id,
        period=str(period),
        period_start=period.first_day,
        period_end=period.end.date(),
        as_of=as_of,
        in_progress=as_of < period.end,
        meters=[
            PartnerMeterUsage(
                meter_code=u.meter.code,
                name=u.meter.name,
                unit=u.meter.unit,
                aggregation=u.meter.aggregation,
                quantity=u.quantity,
                event_count=u.event_count,
                invoiced_quantity=u.invoiced_quantity,
            )
            for u in usage
        ],
    )
