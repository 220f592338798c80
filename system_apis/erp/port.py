"""The ERP System API contract: the port the process layer depends on, and the request,
response and list Structs of its HTTP form (``/system/erp/v1``).

Request Structs state their valid shape in the schema; amounts travel as decimal strings
(``NonNegativeDecimalString``, ``PositiveDecimalString``) and become ``Decimal`` on the way
in. ``ErpPayment`` and ``ErpPaymentIn`` live in the canonical model (like ``ErpDocument``)
and are re-exported here with the port that takes them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal, Protocol

import msgspec
from babel.numbers import list_currencies

from canonical.model import (
    Base,
    Country,
    DecimalString,
    ErpDocument,
    ErpInvoice,
    ErpInvoiceLine,
    ErpItem,
    ErpPayment,
    ErpPaymentIn,
    ErpRevenueJournal,
    LegalEntity,
    NonNegativeDecimalString,
    Page,
    PositiveDecimalString,
    RevenueJournal,
    RevenueJournalLine,
    decimal_text,
)

__all__ = [
    "CODE_PATTERN",
    "PERIOD_PATTERN",
    "REVENUE_ACCOUNT_PATTERN",
    "AccountingPeriod",
    "DocumentList",
    "ErpInvoiceInput",
    "ErpInvoiceLineInput",
    "ErpPayment",
    "ErpPaymentIn",
    "ErpPaymentInput",
    "ErpPaymentList",
    "ErpPort",
    "ErpRevenueJournal",
    "ItemInput",
    "ItemList",
    "LegalEntityInput",
    "LegalEntityList",
    "PeriodStatus",
    "PeriodStatusInput",
    "RevenueJournal",
    "RevenueJournalInput",
    "TrialBalance",
]

PeriodStatus = Literal["open", "closed"]
DocumentKind = Literal["invoice", "credit_memo", "debit_memo"]

# Keys fit the 64-character key columns and never carry control characters.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
Id = Annotated[str, msgspec.Meta(pattern=CODE_PATTERN, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
REVENUE_ACCOUNT_PATTERN = r"^4[0-9]{3,9}$"  # class 4 of the chart (see reference/chart.py)
RevenueAccount = Annotated[str, msgspec.Meta(pattern=REVENUE_ACCOUNT_PATTERN)]
# The ISO 4217 codes the money kernel knows (``canonical.money.is_currency``), stated in
# the schema so that a well-formed but unknown code is refused as invalid input.
IsoCurrency = Annotated[
    str,
    msgspec.Meta(
        pattern="^(" + "|".join(sorted(c for c in list_currencies() if c.isupper())) + ")$"
    ),
]
VatId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,63}$")]
UsState = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
ExternalRef = Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,128}$")]  # printable ASCII
PaymentMethod = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]
CorrelationId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class AccountingPeriod(Base):
    legal_entity_id: str
    period: str  # YYYY-MM
    status: PeriodStatus


class PeriodStatusInput(Base):
    status: PeriodStatus


class LegalEntityInput(Base):
    name: Name
    country: Country
    currency: IsoCurrency
    vat_id: VatId | None = None
    us_state: UsState | None = None

    def with_id(self, entity_id: str) -> LegalEntity:
        return LegalEntity(id=entity_id, **msgspec.structs.asdict(self))

    @classmethod
    def of(cls, entity: LegalEntity) -> LegalEntityInput:
        fields = msgspec.structs.asdict(entity)
        del fields["id"]
        return cls(**fields)


class ItemInput(Base):
    name: Name
    revenue_account: RevenueAccount

    def with_code(self, code: str) -> ErpItem:
        return ErpItem(code=code, name=self.name, revenue_account=self.revenue_account)


class ErpInvoiceLineInput(Base):
    item_code: Id
    description: Description
    amount: NonNegativeDecimalString  # net, already rounded to the currency's minor unit
    tax_amount: NonNegativeDecimalString


class ErpInvoiceInput(Base):
    """An AR document to post; amounts are positive for every kind (a credit memo's
    direction comes from ``kind``)."""

    external_ref: ExternalRef
    kind: DocumentKind
    customer_id: Id
    customer_name: Name
    legal_entity_id: Id
    currency: IsoCurrency
    posting_date: date
    lines: Annotated[list[ErpInvoiceLineInput], msgspec.Meta(min_length=1, max_length=500)]
    correlation_id: CorrelationId | None = None

    def to_canonical(self) -> ErpInvoice:
        fields = msgspec.structs.asdict(self)
        fields["lines"] = [
            ErpInvoiceLine(
                item_code=line.item_code,
                description=line.description,
                amount=Decimal(line.amount),
                tax_amount=Decimal(line.tax_amount),
            )
            for line in self.lines
        ]
        return ErpInvoice(**fields)

    @classmethod
    def of(cls, invoice: ErpInvoice) -> ErpInvoiceInput:
        fields = msgspec.structs.asdict(invoice)
        fields["lines"] = [
            ErpInvoiceLineInput(
                item_code=line.item_code,
                description=line.description,
                amount=format(line.amount, "f"),
                tax_amount=format(line.tax_amount, "f"),
            )
            for line in invoice.lines
        ]
        return cls(**fields)


class ErpPaymentInput(Base):
    """A customer payment to record against an invoice or debit memo of the ERP.
    Idempotent by ``external_ref``: the same payment again answers the one recorded; a
    different one under the same ref is refused (409)."""

    external_ref: ExternalRef
    document_id: Id
    amount: PositiveDecimalString  # in whole minor units of the currency
    currency: IsoCurrency
    received_on: date
    method: PaymentMethod | None = None
    reference: Name | None = None
    correlation_id: CorrelationId | None = None

    def to_canonical(self) -> ErpPaymentIn:
        fields = msgspec.structs.asdict(self)
        fields["amount"] = Decimal(self.amount)
        return ErpPaymentIn(**fields)

    @classmethod
    def of(cls, payment: ErpPaymentIn) -> ErpPaymentInput:
        fields = msgspec.structs.asdict(payment)
        fields["amount"] = decimal_text(payment.amount)
        return cls(**fields)


class RevenueJournalLineInput(Base):
    item_code: Id
    amount: DecimalString  # signed: positive recognises revenue, negative reverses it


class RevenueJournalInput(Base):
    """A revenue recognition journal: per item the revenue recognised on
    ``posting_date`` (Cr revenue account, Dr contract balance 2400; a negative amount the
    other way round). Idempotent by ``external_ref``."""

    external_ref: ExternalRef
    legal_entity_id: Id
    currency: IsoCurrency
    posting_date: date
    description: Name
    lines: Annotated[list[RevenueJournalLineInput], msgspec.Meta(min_length=1, max_length=500)]
    correlation_id: CorrelationId | None = None

    def to_canonical(self) -> RevenueJournal:
        fields = msgspec.structs.asdict(self)
        fields["lines"] = [
            RevenueJournalLine(item_code=line.item_code, amount=Decimal(line.amount))
            for line in self.lines
        ]
        return RevenueJournal(**fields)

    @classmethod
    def of(cls, journal: RevenueJournal) -> RevenueJournalInput:
        fields = msgspec.structs.asdict(journal)
        fields["lines"] = [
            RevenueJournalLineInput(item_code=line.item_code, amount=decimal_text(line.amount))
            for line in journal.lines
        ]
        return cls(**fields)


class TrialBalance(Base):
    """Debit minus credit per account; over all accounts it sums to zero."""

    object: Literal["trial_balance"] = "trial_balance"
    legal_entity_id: str | None = None
    currency: str | None = None
    balances: dict[str, Decimal] = {}


class LegalEntityList(Page, kw_only=True):
    data: list[LegalEntity]


class ItemList(Page, kw_only=True):
    data: list[ErpItem]


class DocumentList(Page, kw_only=True):
    data: list[ErpDocument]


class ErpPaymentList(Page, kw_only=True):
    data: list[ErpPayment]


class ErpPort(Protocol):
    """Legal entities, items, accounting periods, AR documents, customer payments and
    their GL journals.

    ``post_invoice`` is idempotent by ``external_ref``. Errors: ``NotFound`` for unknown
    ids; ``BusinessRuleViolation`` with ``code`` ``period_closed``,
    ``unknown_legal_entity``, ``unknown_item``, ``unknown_currency``, ``invalid_id`` or
    ``amount_not_rounded`` (amounts finer than the currency's minor unit)."""

    async def put_legal_entity(self, entity: LegalEntity) -> LegalEntity: ...

    async def get_legal_entity(self, entity_id: str) -> LegalEntity: ...

    async def list_legal_entities(self) -> list[LegalEntity]: ...

    async def put_item(self, item: ErpItem) -> ErpItem: ...

    async def list_items(self) -> list[ErpItem]: ...

    async def set_period_status(
        self, legal_entity_id: str, period: str, status: PeriodStatus
    ) -> AccountingPeriod: ...

    async def get_period(self, legal_entity_id: str, period: str) -> AccountingPeriod:
        """A period without a stored status is open."""
        ...

    async def post_invoice(self, invoice: ErpInvoice) -> ErpDocument: ...

    async def find_document(self, external_ref: str) -> ErpDocument | None: ...

    async def get_document(self, document_id: str) -> ErpDocument: ...

    async def list_documents(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        customer_id: str | None = None,
    ) -> tuple[list[ErpDocument], bool]: ...

    async def record_payment(self, payment: ErpPaymentIn) -> ErpPayment:
        """Records a customer payment against an invoice or debit memo: Dr bank (1000),
        Cr AR (1200), dated ``received_on``; the document's ``amount_paid`` grows by it.

        Idempotent by ``external_ref``: the same payment again returns the stored one; a
        different one under that ref is a ``Conflict`` (``external_ref_conflict``).
        ``NotFound`` (``document_not_found``) for an unknown document;
        ``BusinessRuleViolation`` with ``code`` ``document_not_payable`` (a credit memo),
        ``currency_mismatch``, ``overpayment`` (more than the document still owes),
        ``period_closed`` (the period of ``received_on``), ``amount_not_rounded`` or
        ``unknown_currency``."""
        ...

    async def list_payments(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[ErpPayment], bool]:
        """Payments in the order they were recorded (commit order, so none recorded later
        can appear before one already seen), the ``limit`` after payment id ``after``,
        and whether more follow: a poller resumes from the last id it saw. ``NotFound``
        (``payment_not_found``) when ``after`` is no payment's id."""
        ...

    async def post_revenue_journal(self, journal: RevenueJournal) -> ErpRevenueJournal:
        """Books revenue recognition: per item, Cr its revenue account and Dr the contract
        balance (2400) by the signed amount, dated ``posting_date``. Idempotent by
        ``external_ref``. ``BusinessRuleViolation`` with ``code`` ``period_closed``,
        ``unknown_legal_entity``, ``unknown_item``, ``unknown_currency`` or
        ``amount_not_rounded``."""
        ...

    async def find_revenue_journal(self, external_ref: str) -> ErpRevenueJournal | None: ...

    async def account_balances(
        self, legal_entity_id: str | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        """Trial balance: debit - credit per account. Without ``currency`` the amounts of
        all currencies are added as they stand (no FX): that still sums to zero, but only
        a single-currency balance is meaningful per account."""
        ...
