"""What finance reads: a period at a glance, the exceptions to work, the ERP backlog and
the path of one request from its events to the ERP. Amounts are per currency (never
added across currencies) and travel as decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from canonical.model import Base, Page
from process_apis.reconciliation import ReconciliationVariance

__all__ = [
    "Backlog",
    "BacklogItem",
    "CurrencyTotals",
    "EventTypeCount",
    "ExceptionCount",
    "ExceptionsSummary",
    "FinanceException",
    "FinanceExceptionList",
    "HeldSummary",
    "PeriodOverview",
    "PostedDay",
    "PostingTotals",
    "ReconciliationStatus",
    "UsageDay",
    "UsageSummary",
]


class UsageDay(Base):
    date: date
    events: int


class EventTypeCount(Base):
    event_type: str
    events: int


class UsageSummary(Base):
    """Usage events whose event time falls in the period, as stored."""

    events: int
    # Kept but not yet matched to a customer and meter (an exception says why).
    unmatched: int
    # Arrived after the period was invoiced: billed by a memo.
    late: int
    by_event_type: list[EventTypeCount]
    daily: list[UsageDay]  # every day of the period, zeros included


class CurrencyTotals(Base):
    """The period's issued documents in one currency (voids that never reached the ERP
    aside)."""

    currency: str
    invoices: int
    invoiced_total: Decimal
    credit_memos: int
    credited_total: Decimal
    debit_memos: int
    debited_total: Decimal
    # invoices + debit memos - credit memos
    net_total: Decimal
    # Invoices still drafts (the period's grace window): re-rated by every run until
    # finalized, so not in the figures above.
    drafts: int
    draft_total: Decimal


class PostingTotals(Base):
    """Where the period's documents in one currency stand in the ERP outbox."""

    currency: str
    posted: int
    posted_total: Decimal  # net: credit memos count negative
    pending: int
    pending_total: Decimal
    failed: int
    failed_total: Decimal


class PostedDay(Base):
    """The period's documents the ERP took on one day (the day they were posted)."""

    date: date
    currency: str
    documents: int
    total: Decimal  # net: credit memos count negative


class HeldSummary(Base):
    # Subscriptions whose billing for the period is held by an open ``billing_failed``.
    billing_held: int
    # Subscriptions active in the period without an invoice for it (held or not billed
    # yet), as the latest reconciliation found them (0 before the first).
    uninvoiced_subscriptions: int


class ExceptionCount(Base):
    kind: str
    open: int


class ExceptionsSummary(Base):
    """Exceptions open now (of every period: an unknown customer belongs to none)."""

    open: int
    by_kind: list[ExceptionCount]


class ReconciliationStatus(Base):
    """The period's latest reconciliation, as it was made at `generated_at` (by the
    process reconciliation API, `meterline reconcile` or the finance page's "Reconcile
    now"): showing it does not reconcile again. `not_reconciled` (no time, no documents,
    no variances) until the period is reconciled once."""

    status: Literal["balanced", "variances", "not_reconciled"]
    generated_at: datetime | None
    documents: int
    reconciled_documents: int
    pending_documents: int
    failed_documents: int
    variances: list[ReconciliationVariance]


class PeriodOverview(Base):
    object: Literal["finance_period_overview"]
    period: str
    generated_at: datetime
    usage: UsageSummary
    invoiced: list[CurrencyTotals]
    posting: list[PostingTotals]
    posted_daily: list[PostedDay]
    held: HeldSummary
    exceptions: ExceptionsSummary
    reconciliation: ReconciliationStatus


class FinanceException(Base):
    id: str
    kind: str
    status: Literal["open", "resolved"]
    subject: str  # what it is about: a customer, an invoice, <subscription>:<period>, ...
    detail: str
    occurrences: int
    context: dict[str, Any]
    correlation_id: str | None
    created_at: datetime
    # Open, and of a kind whose work can be re-driven (else: resolve it with a note).
    retryable: bool
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None


class FinanceExceptionList(Page):
    data: list[FinanceException]


class BacklogItem(Base):
    """A document the ERP does not hold yet: waiting in the outbox, or refused."""

    invoice_id: str
    number: str
    kind: str
    customer_id: str
    period: str
    currency: str
    total: Decimal
    status: Literal["pending", "failed"]
    attempts: int
    # The last failure (the ERP's answer), null before the first attempt.
    reason: str | None
    # When the outbox tries again (null: as soon as a worker is free; failed: never by
    # itself, finance retries the ``posting_failed`` exception).
    next_attempt_at: datetime | None
    waiting_since: datetime  # finalized (or written) at
    age_seconds: int
    in_flight: bool  # a worker holds it right now
    exception_id: str | None  # the open ``posting_failed`` exception about it


class Backlog(Page):
    data: list[BacklogItem]
