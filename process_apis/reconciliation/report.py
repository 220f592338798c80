"""The reconciliation report of one period: what Meterline and the ERP hold, side by
side, and every variance between them.

Rows are listed whether they agree or not, so the report also shows finance what was
checked; ``variances`` lists only what disagrees, one entry per subject (the subject of
the ``reconciliation_variance`` exception raised for it)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from canonical.model import Base

__all__ = [
    "VARIANCE_KINDS",
    "ReconciledDocument",
    "ReconciledLedger",
    "ReconciledQuantity",
    "ReconciliationReport",
    "ReconciliationSummary",
    "ReconciliationVariance",
    "UninvoicedSubscription",
    "VarianceKind",
]

VarianceKind = Literal[
    "quantity_mismatch",  # events re-aggregated != invoiced quantity (customer, meter)
    "document_missing",  # a posted document the ERP does not hold
    "document_mismatch",  # the ERP's document differs from Meterline's (totals, parties)
    "journal_unbalanced",  # a document's journal, or a ledger, whose debits != credits
    "unexpected_document",  # an ERP document of the period no Meterline document explains
]
VARIANCE_KINDS: tuple[str, ...] = VarianceKind.__args__  # type: ignore[attr-defined]


class ReconciledQuantity(Base):
    """One customer and meter: the quantity the stored events give today, aggregated the
    way invoicing does (see ``process_apis.reconciliation.quantities``), against the
    quantity its invoice and memos of the period bill."""

    customer_id: str
    meter_code: str
    aggregation: str  # sum | count | max | unique_count | latest (unknown: meter deleted)
    event_count: int  # stored events behind ``event_quantity``
    event_quantity: Decimal
    invoiced_quantity: Decimal  # invoice and debit memos add, credit memos subtract
    difference: Decimal  # event_quantity - invoiced_quantity
    status: Literal["matched", "variance"]


class ReconciledDocument(Base):
    """One Meterline document of the period (invoice or memo) against the ERP's."""

    invoice_id: str
    number: str
    kind: str  # invoice | credit_memo | debit_memo
    customer_id: str
    legal_entity_id: str
    currency: str
    # reconciled: posted and equal; pending: not posted yet (in the outbox); failed: the
    # ERP refused it (a ``posting_failed`` exception says why); variance: see variances.
    status: Literal["reconciled", "pending", "failed", "variance"]
    total: Decimal
    erp_document_id: str | None = None
    erp_total: Decimal | None = None
    difference: Decimal | None = None  # total - erp_total, when the ERP holds it
    journal_balanced: bool | None = None  # the ERP document's own journal


class ReconciledLedger(Base):
    """The ERP trial balance of a legal entity in one currency: debits minus credits over
    all accounts, which must be zero. The ERP port reports the ledger as it stands (all
    periods), so an imbalance shows in every period's report until it is fixed."""

    legal_entity_id: str
    currency: str
    imbalance: Decimal
    balanced: bool


class UninvoicedSubscription(Base):
    """A subscription active in the period that has no invoice for it yet: the period is
    not billed, or its run held it (a ``billing_failed`` exception). Not a variance."""

    subscription_id: str
    customer_id: str


class ReconciliationVariance(Base):
    kind: VarianceKind
    subject: str  # <period>:<customer>:<meter> or <period>:<document id> or <period>:ledger:..
    detail: str
    context: dict[str, Any]


class ReconciliationSummary(Base):
    quantities: int
    documents: int
    reconciled_documents: int
    pending_documents: int
    failed_documents: int
    uninvoiced_subscriptions: int
    variances: int


class ReconciliationReport(Base):
    object: Literal["reconciliation"]
    period: str
    status: Literal["balanced", "variances"]
    generated_at: datetime
    summary: ReconciliationSummary
    quantities: list[ReconciledQuantity]
    documents: list[ReconciledDocument]
    ledgers: list[ReconciledLedger]
    uninvoiced: list[UninvoicedSubscription]
    variances: list[ReconciliationVariance]
