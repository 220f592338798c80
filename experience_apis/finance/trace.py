"""A request traced for finance: its source events, and each document they (or the
request itself) led to, with that document's way into the ERP in one place — outbox row
and ERP document side by side, instead of the process trace's separate lists."""

from __future__ import annotations

from decimal import Decimal

from canonical import errors
from canonical.model import Base
from process_apis.lineage.views import (
    CorrelationTrace,
    DocumentRef,
    ErpDocumentRef,
    EventRef,
    ExceptionRef,
    PostingRef,
    RunRef,
)

__all__ = ["FinanceTrace", "TracedDocument", "finance_trace"]


class TracedDocument(Base):
    id: str
    number: str
    kind: str
    status: str
    customer_id: str
    period: str
    total: Decimal
    currency: str
    run_id: str | None
    correlation_id: str | None
    # How the document is tied to the trace: written by the request itself, or billing
    # the events the request sent.
    relation: str  # "written" | "bills_events"
    posting: PostingRef | None  # the outbox row (none for drafts)
    erp_document: ErpDocumentRef | None  # what the ERP holds for it (external_ref = id)


class FinanceTrace(Base):
    correlation_id: str
    event_count: int  # every event the request stored, even beyond ``events``
    events: list[EventRef]
    runs: list[RunRef]
    documents: list[TracedDocument]
    exceptions: list[ExceptionRef]
    # Some list held more than a trace shows (the process lineage API pages through
    # the events of an invoice line).
    truncated: bool


def _document(
    ref: DocumentRef,
    relation: str,
    outbox: dict[str, PostingRef],
    erp: dict[str, ErpDocumentRef],
) -> TracedDocument:
    return TracedDocument(
        id=ref.id,
        number=ref.number,
        kind=ref.kind,
        status=ref.status,
        customer_id=ref.customer_id,
        period=ref.period,
        total=ref.total,
        currency=ref.currency,
        run_id=ref.run_id,
        correlation_id=ref.correlation_id,
        relation=relation,
        posting=outbox.get(ref.id),
        erp_document=erp.get(ref.id),
    )


def finance_trace(trace: CorrelationTrace) -> FinanceTrace:
    """Reshape the process trace; NotFound when nothing carries the correlation ID."""
    outbox = {p.invoice_id: p for p in trace.postings.data}
    erp = {d.external_ref: d for d in trace.erp_documents.data}
    documents = [_document(d, "written", outbox, erp) for d in trace.documents.data]
    written = {d.id for d in documents}
    documents += [
        _document(d, "bills_events", outbox, erp)
        for d in trace.billed_in.data
        if d.id not in written
    ]
    if not (
        trace.event_count
        or documents
        or trace.runs.data
        or trace.exceptions.data
        or trace.audit.data
    ):
        raise errors.NotFound(f"nothing carries correlation ID {trace.correlation_id}")
    parts = (
        trace.events,
        trace.runs,
        trace.documents,
        trace.billed_in,
        trace.postings,
        trace.erp_documents,
        trace.exceptions,
    )
    return FinanceTrace(
        correlation_id=trace.correlation_id,
        event_count=trace.event_count,
        events=trace.events.data,
        runs=trace.runs.data,
        documents=documents,
        exceptions=trace.exceptions.data,
        truncated=any(part.truncated for part in parts),
    )
