"""What a trace shows: small references to each record, not the records in full (the
owning APIs serve those)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from canonical.model import Base, Page
from process_apis.audit import AuditEntry

__all__ = [
    "CorrelationTrace",
    "DocumentRef",
    "ErpDocumentRef",
    "EventList",
    "EventRef",
    "ExceptionRef",
    "PostingRef",
    "RunRef",
    "TracedAudit",
    "TracedDocuments",
    "TracedErpDocuments",
    "TracedEvents",
    "TracedExceptions",
    "TracedPostings",
    "TracedRuns",
]


class EventRef(Base):
    source: str
    id: str
    event_type: str
    customer_id: str
    timestamp: datetime
    received_at: datetime
    correlation_id: str | None
    matched: bool
    adjustment: bool
    seq: int  # the cursor of the line drill-down
    properties: dict[str, Any] = {}  # as the event carried them


class EventList(Page):
    data: list[EventRef]


class RunRef(Base):
    id: str
    period: str
    status: str
    created_at: datetime


class DocumentRef(Base):
    id: str
    number: str
    kind: str
    status: str
    customer_id: str
    period: str
    total: Decimal
    currency: str
    run_id: str | None
    erp_document_id: str | None
    correlation_id: str | None


class PostingRef(Base):
    invoice_id: str
    status: str
    attempts: int
    erp_document_id: str | None
    last_error: str | None


class ErpDocumentRef(Base):
    id: str
    external_ref: str
    kind: str
    posting_date: date
    total: Decimal
    currency: str
    amount_paid: Decimal
    journal_entry_id: str
    correlation_id: str | None


class ExceptionRef(Base):
    id: str
    kind: str
    status: str
    detail: str


# Each list of a trace, typed for the contract; ``truncated``: more exist than a trace
# shows (``TRACE_LIMIT``).
class TracedEvents(Base):
    data: list[EventRef]
    truncated: bool


class TracedRuns(Base):
    data: list[RunRef]
    truncated: bool


class TracedDocuments(Base):
    data: list[DocumentRef]
    truncated: bool


class TracedPostings(Base):
    data: list[PostingRef]
    truncated: bool


class TracedErpDocuments(Base):
    data: list[ErpDocumentRef]
    truncated: bool


class TracedExceptions(Base):
    data: list[ExceptionRef]
    truncated: bool


class TracedAudit(Base):
    data: list[AuditEntry]
    truncated: bool


class CorrelationTrace(Base):
    correlation_id: str
    # Usage events stored by the request (all of them, even when ``events`` is cut).
    event_count: int
    events: TracedEvents
    # Records the request caused directly.
    runs: TracedRuns
    documents: TracedDocuments
    exceptions: TracedExceptions
    audit: TracedAudit
    # Forward along the chain: the documents billing its events, the outbox rows and
    # ERP documents of every document above.
    billed_in: TracedDocuments
    postings: TracedPostings
    erp_documents: TracedErpDocuments
