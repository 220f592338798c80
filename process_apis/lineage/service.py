"""Lineage: from any record back to what caused it, and forward to what it became.

- **By correlation ID**: every record a request causes carries its correlation ID (usage
  events, billing runs, invoices and memos, outbox rows, ERP documents, exceptions,
  audit entries). ``trace`` gathers them and follows the chain forward: from events to
  the documents that bill them (same customer, period and event type), from documents
  to their outbox rows and ERP documents.
- **From an invoice line to its source events**: ``line_events`` lists, a page at a time,
  exactly the stored events a usage line's quantity was measured from
  (``billed_events``): the customer's events of the line's event type within the line's
  service window, as billing aggregated them (matched or not) when the invoice was made
  (late events are not); for a late-usage memo's line, the late events it corrected; for
  the line of a credit memo reversing a void, the voided invoice's.

Lists in a trace are capped (``TRACE_LIMIT``) and say so; the line drill-down pages."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import errors
from canonical.time import Period, midnight
from process_apis.audit import AuditLog
from process_apis.billing.aggregation import billed_events
from process_apis.invoices.reversals import reversed_invoice
from process_apis.lineage.views import (
    CorrelationTrace,
    DocumentRef,
    ErpDocumentRef,
    EventRef,
    ExceptionRef,
    PostingRef,
    RunRef,
    TracedAudit,
    TracedDocuments,
    TracedErpDocuments,
    TracedEvents,
    TracedExceptions,
    TracedPostings,
    TracedRuns,
)
from process_apis.tables import (
    billing_runs,
    exceptions,
    invoice_lines,
    invoices,
    postings,
    usage_events,
)
from system_apis.erp.port import ErpPort

__all__ = ["TRACE_LIMIT", "LineageService"]

TRACE_LIMIT = 100


def _event(row) -> EventRef:
    return EventRef(
        source=row.source,
        id=row.event_id,
        event_type=row.event_type,
        customer_id=row.customer_id,
        timestamp=row.timestamp,
        received_at=row.received_at,
        correlation_id=row.correlation_id,
        matched=bool(row.matched),
        adjustment=bool(row.adjustment),
        seq=row.seq,
        properties=row.properties,
    )


def _document(row) -> DocumentRef:
    return DocumentRef(
        id=row.id,
        number=row.number,
        kind=row.kind,
        status=row.status,
        customer_id=row.customer_id,
        period=str(Period(row.period_start.year, row.period_start.month)),
        total=row.total,
        currency=row.currency,
        run_id=row.run_id,
        erp_document_id=row.erp_document_id,
        correlation_id=row.correlation_id,
    )


def _listed(kind, rows: list[Any], convert):
    """``kind`` of the first TRACE_LIMIT rows, converted, saying whether more exist."""
    return kind(data=[convert(r) for r in rows[:TRACE_LIMIT]], truncated=len(rows) > TRACE_LIMIT)


class LineageService:
    def __init__(self, sessions: async_sessionmaker, erp: ErpPort) -> None:
        self._sessions = sessions
        self._erp = erp
        self._audit = AuditLog(sessions)

    async def trace(self, correlation_id: str) -> CorrelationTrace:
        cap = TRACE_LIMIT + 1
        async with self._sessions() as session:

            async def caused(table: sa.Table, order) -> list[Any]:
                """Up to ``cap`` rows of ``table`` the request caused, in ``order``."""
                query = sa.select(table).where(table.c.correlation_id == correlation_id)
                return (await session.execute(query.order_by(order).limit(cap))).all()

            events = await caused(usage_events, usage_events.c.seq)
            event_count = len(events)
            if event_count == cap:
                event_count = (
                    await session.execute(
                        sa.select(sa.func.count()).where(
                            usage_events.c.correlation_id == correlation_id
                        )
                    )
                ).scalar_one()
            runs = await caused(billing_runs, billing_runs.c.id)
            documents = await caused(invoices, invoices.c.id)
            found_exceptions = await caused(exceptions, exceptions.c.id)
            billing = await self._billing_documents(session, events)
            document_ids = [d.id for d in documents] + [d.id for d in billing]
            outbox = (
                await session.execute(
                    sa.select(postings)
                    .where(postings.c.invoice_id.in_(document_ids[: 2 * TRACE_LIMIT]))
                    .order_by(postings.c.invoice_id)
                )
            ).all()
        audit, more_audit = await self._audit.list(correlation_id=correlation_id, limit=TRACE_LIMIT)
        # Only documents Meterline recorded as posted are asked for, by the ERP's own id:
        # one call each, none for a document the ERP never took.
        posted = {d.id: d.erp_document_id for d in [*documents, *billing]}
        erp_ids = [posted[i] for i in dict.fromkeys(document_ids[:TRACE_LIMIT]) if posted[i]]
        erp_documents = []
        for erp_id in dict.fromkeys(erp_ids):
            try:
                found = await self._erp.get_document(erp_id)
            except errors.NotFound:
                continue
            erp_documents.append(
                ErpDocumentRef(
                    id=found.id,
                    external_ref=found.external_ref,
                    kind=found.kind,
                    posting_date=found.posting_date,
                    total=found.total,
                    currency=found.currency,
                    amount_paid=found.amount_paid,
                    journal_entry_id=found.journal.id,
                    correlation_id=found.correlation_id,
                )
            )
        return CorrelationTrace(
            correlation_id=correlation_id,
            event_count=event_count,
            events=_listed(TracedEvents, events, _event),
            runs=_listed(
                TracedRuns,
                runs,
                lambda r: RunRef(
                    id=r.id, period=r.period, status=r.status, created_at=r.created_at
                ),
            ),
            documents=_listed(TracedDocuments, documents, _document),
            billed_in=_listed(TracedDocuments, billing, _document),
            postings=_listed(
                TracedPostings,
                outbox,
                lambda p: PostingRef(
                    invoice_id=p.invoice_id,
                    status=p.status,
                    attempts=p.attempts,
                    erp_document_id=p.erp_document_id,
                    last_error=p.last_error,
                ),
            ),
            erp_documents=TracedErpDocuments(
                data=erp_documents, truncated=len(document_ids) > TRACE_LIMIT
            ),
            exceptions=_listed(
                TracedExceptions,
                found_exceptions,
                lambda e: ExceptionRef(id=e.id, kind=e.kind, status=e.status, detail=e.detail),
            ),
            audit=TracedAudit(data=audit, truncated=more_audit),
        )

    async def _billing_documents(self, session, events) -> list[Any]:
        """The documents billing these events: same customer, period and event type
        (matched or not: an event whose mapping appeared later is billed all the same)."""
        keys = {
            (e.customer_id, date(e.timestamp.year, e.timestamp.month, 1), e.event_type)
            for e in events
        }
        if not keys:
            return []
        customers = sorted({k[0] for k in keys})
        rows = (
            await session.execute(
                sa.select(invoices, invoice_lines.c.event_type)
                .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
                .where(
                    invoices.c.customer_id.in_(customers),
                    invoices.c.period_start.in_(sorted({k[1] for k in keys})),
                    invoice_lines.c.event_type.in_(sorted({k[2] for k in keys})),
                )
                .order_by(invoices.c.id)
            )
        ).all()
        seen: dict[str, Any] = {}
        for row in rows:
            if (row.customer_id, row.period_start, row.event_type) in keys:
                seen.setdefault(row.id, row)
        return list(seen.values())

    async def line_events(
        self, invoice_id: str, line_id: str, *, limit: int, starting_after: int | None
    ) -> tuple[list[EventRef], bool]:
        """A page of the events behind a document's line, in event time order, after the
        event ``starting_after`` (a seq); ``invalid_cursor`` for a seq that is not one of
        them, whoever's event it is."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    sa.select(
                        invoices.c.id,
                        invoices.c.kind,
                        invoices.c.customer_id,
                        invoices.c.period_start,
                        invoices.c.period_end,
                        invoices.c.corrects_invoice_id,
                        invoices.c.run_id,
                        invoices.c.voided_at,
                        invoice_lines.c.event_type,
                        invoice_lines.c.service_start,
                        invoice_lines.c.service_end,
                    )
                    .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
                    .where(invoices.c.id == invoice_id, invoice_lines.c.id == line_id)
                )
            ).first()
            if found is None:
                raise errors.NotFound(f"invoice {invoice_id} has no line {line_id}")
            if found.event_type is None:  # a flat fee or minimum: no events behind it
                return [], False
            # A void's credit memo bills the voided invoice's events, its lines copies of
            # that invoice's (service windows included).
            billing = await reversed_invoice(session, found) or found
            behind = billed_events(
                found.customer_id,
                found.event_type,
                # The line's own service window (lines written before windows were
                # recorded: the whole period).
                midnight(found.service_start or found.period_start),
                midnight(found.service_end or found.period_end),
                billing.kind,
                billing.id,
                billing.voided_at,
            )
            query = (
                sa.select(usage_events)
                .where(behind)
                # Index order (customer, event type, time, then the row), so a page never
                # sorts the customer's month.
                .order_by(usage_events.c.timestamp, usage_events.c.seq)
                .limit(limit + 1)
            )
            if starting_after is not None:
                # Looked up among the line's own events: any other seq, another customer's
                # included, is refused alike, so the cursor tells nothing of other events.
                after = (
                    await session.execute(
                        sa.select(usage_events.c.timestamp).where(
                            behind, usage_events.c.seq == starting_after
                        )
                    )
                ).scalar_one_or_none()
                if after is None:
                    raise errors.InvalidRequest(
                        f"starting_after={starting_after} is no event behind this line",
                        code="invalid_cursor",
                    )
                query = query.where(
                    sa.tuple_(usage_events.c.timestamp, usage_events.c.seq)
                    > sa.tuple_(sa.literal(after, usage_events.c.timestamp.type), starting_after)
                )
            rows = (await session.execute(query)).all()
        return [_event(r) for r in rows[:limit]], len(rows) > limit
