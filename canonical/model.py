"""The canonical model: one msgspec Struct per business object, shared by every layer.

Amounts are ``Decimal`` (decimal strings on the wire), times are UTC datetimes, and
identifiers are prefixed opaque strings. Charge models form a tagged union on ``model``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Aggregation",
    "Amendment",
    "Charge",
    "Customer",
    "ErpDocument",
    "ErpInvoice",
    "ErpInvoiceLine",
    "ErpItem",
    "ErpPayment",
    "ErpPaymentIn",
    "ErpRevenueJournal",
    "ExceptionRecord",
    "FlatCharge",
    "GraduatedCharge",
    "Invoice",
    "InvoiceLine",
    "JournalEntry",
    "JournalLine",
    "LegalEntity",
    "Meter",
    "MinimumCommitment",
    "PackageCharge",
    "Page",
    "PerUnitCharge",
    "PostingStatus",
    "PricePlan",
    "RatedCharge",
    "RevenueJournal",
    "RevenueJournalLine",
    "Subscription",
    "TaxLine",
    "TaxStatus",
    "Tier",
    "UsageEvent",
    "VolumeCharge",
    "decimal_text",
]

Aggregation = Literal["sum", "count", "max", "unique_count", "latest"]
TaxStatus = Literal["taxable", "exempt"]
# draft -> finalized -> posted -> partially_paid -> paid; void from draft, finalized or
# posted (a posted document is reversed by a credit memo). See process_apis/invoices.
InvoiceStatus = Literal["draft", "finalized", "posted", "partially_paid", "paid", "void"]
DocumentKind = Literal["invoice", "credit_memo", "debit_memo"]

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
# Decimal inputs travel as strings whose shape the contract states exactly, so that the
# served schema, the decoder and the fuzzer agree on what is valid.
DecimalString = Annotated[str, msgspec.Meta(pattern=r"^-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?$")]
NonNegativeDecimalString = Annotated[
    str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?$")
]
PositiveDecimalString = Annotated[
    str, msgspec.Meta(pattern=r"^([1-9][0-9]{0,17}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9])$")
]


def decimal_text(value: Decimal) -> str:
    """The wire form of a decimal (``DecimalString``): fixed-point, never exponent notation."""
    if value == 0:
        return "0"
    if value.as_tuple().exponent < -12:  # type: ignore[operator]
        value = value.normalize()  # trailing zeros beyond 12 dp carry nothing
    return format(value, "f")


NonNegative = Decimal  # validated by the owning system; the wire form is a decimal string
Positive = Decimal


class Base(msgspec.Struct, forbid_unknown_fields=True):
    """Shared configuration: unknown input fields are an error."""


# --- CRM -----------------------------------------------------------------------------


class Customer(Base):
    id: str
    name: str
    legal_entity_id: str
    billing_country: Country
    currency: CurrencyCode
    tax_status: TaxStatus = "taxable"
    tax_id: str | None = None
    us_state: str | None = None
    parent_id: str | None = None
    partner_id: str | None = None


class Amendment(Base):
    """From ``effective_from`` (inclusive) the subscription is on ``plan_id``."""

    effective_from: date
    plan_id: str


class Subscription(Base):
    id: str
    customer_id: str
    plan_id: str
    start_date: date
    end_date: date | None = None  # exclusive
    amendments: list[Amendment] = []


# --- Billing engine ------------------------------------------------------------------


class Meter(Base):
    id: str
    code: Code
    name: str
    event_type: str
    aggregation: Aggregation
    field: str | None = None  # the property aggregated; None for ``count``
    unit: str = "unit"


class Tier(Base):
    unit_price: NonNegative
    up_to: Positive | None = None  # inclusive upper bound; None for the last tier
    flat_fee: NonNegative = Decimal(0)


class _ChargeBase(Base, tag_field="model"):
    code: Code
    description: str
    item_code: str  # the ERP item (and so the revenue account) this charge books to


class PerUnitCharge(_ChargeBase, tag="per_unit"):
    meter_code: Code
    unit_price: NonNegative


class GraduatedCharge(_ChargeBase, tag="graduated"):
    meter_code: Code
    tiers: list[Tier]


class VolumeCharge(_ChargeBase, tag="volume"):
    meter_code: Code
    tiers: list[Tier]


class PackageCharge(_ChargeBase, tag="package"):
    meter_code: Code
    package_size: Positive
    package_price: NonNegative


class FlatCharge(_ChargeBase, tag="flat"):
    """A recurring fee per period, prorated by active days for partial periods."""

    amount: NonNegative


class MinimumCommitment(_ChargeBase, tag="minimum"):
    """A true-up line when the period's usage charges fall short of ``amount``."""

    amount: NonNegative


Charge = (
    PerUnitCharge | GraduatedCharge | VolumeCharge | PackageCharge | FlatCharge | MinimumCommitment
)


class PricePlan(Base):
    id: str
    code: Code
    name: str
    currency: CurrencyCode
    charges: list[Charge]


class RatedCharge(Base):
    """One priced line out of the rating function, before tax."""

    charge_code: str
    kind: Literal["usage", "recurring", "minimum"]
    description: str
    item_code: str
    meter_code: str | None
    quantity: Decimal
    unit_price: Decimal | None  # None where no single unit price applies (tiers)
    amount: Decimal  # rounded to the currency's minor unit
    currency: str
    period_start: date
    period_end: date  # exclusive


# --- Tax engine ----------------------------------------------------------------------


class TaxLine(Base):
    rate: Decimal  # 0.19 for 19 %
    amount: Decimal
    jurisdiction: str
    kind: Literal["domestic", "reverse_charge", "oss", "exempt", "us_state", "export"]
    note: str | None = None


# --- Usage ---------------------------------------------------------------------------


class UsageEvent(Base):
    id: str
    source: str
    event_type: str
    customer_id: str
    timestamp: datetime
    properties: dict[str, Any] = {}


# --- Invoices ------------------------------------------------------------------------


class InvoiceLine(Base):
    id: str
    charge_code: str
    kind: Literal["usage", "recurring", "minimum"]
    description: str
    item_code: str
    meter_code: str | None
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    tax: TaxLine
    event_count: int = 0  # lineage: how many source events stand behind this line
    # The days the line bills, [start, end): the subscription's active days of the
    # period on one plan (null on documents written before they were recorded: the
    # whole period). Revenue schedules recognise the line over them.
    service_start: date | None = None
    service_end: date | None = None


class Invoice(Base):
    id: str
    number: str
    customer_id: str
    subscription_id: str
    legal_entity_id: str
    currency: str
    period_start: date
    period_end: date
    status: InvoiceStatus
    lines: list[InvoiceLine]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    run_id: str | None
    correlation_id: str | None
    erp_document_id: str | None
    created_at: datetime
    kind: DocumentKind = "invoice"
    # A memo: the document it corrects (a void's reversal, a late-usage adjustment).
    corrects_invoice_id: str | None = None
    # Received so far, as the ERP reports payments (invoices and debit memos).
    amount_paid: Decimal = Decimal(0)
    void_reason: str | None = None


# --- ERP -----------------------------------------------------------------------------


class JournalLine(Base):
    account: str
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)


class JournalEntry(Base):
    id: str
    document_id: str
    posting_date: date
    currency: str
    lines: list[JournalLine]


class LegalEntity(Base):
    """A selling company of the group: invoices are issued and booked per legal entity."""

    id: str
    name: str
    country: Country
    currency: CurrencyCode
    vat_id: str | None = None
    us_state: str | None = None


class ErpItem(Base):
    """A sellable item; its revenue account is where the ERP books the line's revenue."""

    code: str
    name: str
    revenue_account: str


class ErpInvoiceLine(Base):
    item_code: str
    description: str
    amount: Decimal  # net, rounded
    tax_amount: Decimal  # rounded


class ErpInvoice(Base):
    """An AR document as submitted to the ERP; ``external_ref`` makes posting idempotent.

    ``kind`` is ``invoice``, ``credit_memo`` or ``debit_memo``."""

    external_ref: str
    kind: Literal["invoice", "credit_memo", "debit_memo"]
    customer_id: str
    customer_name: str
    legal_entity_id: str
    currency: CurrencyCode
    posting_date: date
    lines: list[ErpInvoiceLine]
    correlation_id: str | None = None


class ErpDocument(Base):
    id: str
    external_ref: str
    kind: Literal["invoice", "credit_memo", "debit_memo"]
    customer_id: str
    legal_entity_id: str
    currency: str
    posting_date: date
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    journal: JournalEntry
    correlation_id: str | None
    created_at: datetime
    # Payments received against it so far (``ErpPayment``); a credit memo is never paid.
    amount_paid: Decimal = Decimal(0)


class ErpPaymentIn(Base):
    """A customer payment received against one AR document (an invoice or a debit memo)
    of the ERP, as recorded there; ``external_ref`` (e.g. the bank transaction id) makes
    recording it idempotent."""

    external_ref: str
    document_id: str
    amount: Decimal  # positive, in whole minor units of ``currency``
    currency: CurrencyCode  # the document's currency
    received_on: date  # books the payment: its accounting period must be open
    method: str | None = None  # e.g. bank_transfer, card, direct_debit
    reference: str | None = None  # e.g. the remittance text of the bank statement line
    correlation_id: str | None = None


class ErpPayment(Base):
    """A recorded payment with its GL entry (debit bank, credit AR), in the order the ERP
    recorded payments: ``id`` is the cursor of ``list_payments``.

    ``document_external_ref`` is the Meterline invoice id the document was posted with,
    and ``document_total`` / ``document_amount_paid`` what the document came to and had
    received right after this payment (equal: paid in full), so a consumer can settle its
    invoice from the payment alone."""

    id: str
    external_ref: str
    document_id: str
    document_external_ref: str
    customer_id: str
    legal_entity_id: str
    amount: Decimal
    currency: str
    received_on: date
    method: str | None
    reference: str | None
    document_total: Decimal
    document_amount_paid: Decimal
    journal: JournalEntry
    correlation_id: str | None
    created_at: datetime


class RevenueJournalLine(Base):
    """Revenue of one item recognised on the journal's date: positive moves it from the
    contract balance (2400) into the item's revenue account, negative moves it back."""

    item_code: str
    amount: Decimal  # signed, rounded to the currency's minor unit


class RevenueJournal(Base):
    """A revenue recognition journal as submitted to the ERP: for one legal entity,
    currency and date, the revenue the schedules recognise (or defer) that day.
    ``external_ref`` makes posting it idempotent."""

    external_ref: str
    legal_entity_id: str
    currency: CurrencyCode
    posting_date: date
    description: str
    lines: list[RevenueJournalLine]
    correlation_id: str | None = None


class ErpRevenueJournal(Base):
    """A posted revenue recognition journal with its GL entry."""

    id: str
    external_ref: str
    legal_entity_id: str
    currency: str
    posting_date: date
    description: str
    lines: list[JournalLine]
    correlation_id: str | None
    created_at: datetime


class PostingStatus(Base):
    invoice_id: str
    status: Literal["pending", "posted", "failed"]
    erp_document_id: str | None = None
    attempts: int = 0
    last_error: str | None = None


# --- Exceptions ----------------------------------------------------------------------


class ExceptionRecord(Base):
    id: str
    kind: str  # unknown_customer, unknown_event_type, posting_failed, ...
    status: Literal["open", "resolved"]
    detail: str
    context: dict[str, Any]
    correlation_id: str | None
    created_at: datetime
    resolved_at: datetime | None = None
    # The OAuth client that resolved it by hand, and its note; null when the system
    # closed it (the mapping appeared, a retry went through).
    resolved_by: str | None = None
    resolution: str | None = None


class Page(msgspec.Struct, kw_only=True):
    """Shape of every list response: ``{"object": "list", "data": [...], "has_more": bool}``.

    Each route declares its own subclass with a typed ``data`` so the contract says what
    the list holds."""

    object: Literal["list"] = "list"
    has_more: bool
