"""Revenue schedules and the recognition journals they are booked by, in the process
layer's ``MetaData``.

A schedule is one line of a posted document: its amount, how it is recognised over its
service days and how far it has been booked. Its entries are computed, not stored
(``schedule.entries``): a month of daily rows per line would outweigh the invoices.
``booked_through`` moves forward in the transaction that writes the journals carrying
the entries before it, so an entry is booked once."""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, Table

from canonical.persistence import DecimalText, JSONDoc, UTCDateTime
from process_apis.tables import metadata

__all__ = ["revenue_journals", "revenue_schedules"]

revenue_schedules = Table(
    "revenue_schedules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("document_id", String(64), ForeignKey("invoices.id"), nullable=False, index=True),
    # One schedule per document line: a second worker scheduling it fails, not doubles.
    Column("line_id", String(64), nullable=False, unique=True),
    Column("legal_entity_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("method", String(16), nullable=False),  # ratable | consumption
    Column("service_start", Date, nullable=False),
    Column("service_end", Date, nullable=False),  # exclusive
    Column("amount", DecimalText, nullable=False),  # signed: a credit memo's is negative
    # Consumption: the line's quantity per service day (decimal strings); null: ratable.
    Column("weights", JSONDoc),
    # The document's ERP posting date: its revenue is deferred then, and service days of
    # earlier accounting periods are recognised then (a cumulative catch-up).
    Column("posting_date", Date, nullable=False),
    Column("last_entry_on", Date, nullable=False),
    # Entries dated before it are in journals; 9999-12-31 once all are (so that a pass
    # reads, by the index, only schedules with entries left).
    Column("booked_through", Date),
    Column("correlation_id", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_revenue_schedules_due", "booked_through"),
)

revenue_journals = Table(
    "revenue_journals",
    metadata,
    Column("id", String(64), primary_key=True),  # the ERP external_ref
    Column("legal_entity_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("posting_date", Date, nullable=False),
    Column("lines", JSONDoc, nullable=False),  # [{"item_code", "amount"}], signed
    Column("status", String(16), nullable=False),  # pending | posted | failed
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(1000)),
    Column("erp_journal_id", String(64)),
    Column("correlation_id", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("posted_at", UTCDateTime),
    Index("ix_revenue_journals_status", "status", "posting_date"),
)
