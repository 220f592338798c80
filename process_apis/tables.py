"""Tables owned by the process layer: usage events, idempotency keys, billing runs,
invoices and their lines, the ERP posting outbox, exceptions and the latest
reconciliation of each period."""

from sqlalchemy import (
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    text,
)

from canonical.persistence import DecimalText, JSONDoc, UTCDateTime, new_metadata

metadata = new_metadata()

usage_events = Table(
    "usage_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("customer_id", String(255), nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("properties", JSONDoc, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("correlation_id", String(128)),
    # 1 when customer and event type were known at receipt; billing reads events by
    # customer and type, so an unmatched event is billed once its mapping exists.
    Column("matched", Integer, nullable=False),
    # 1 when the event's period was already invoiced at receipt: billing corrects that
    # invoice with a memo instead of leaving the event unbilled.
    Column("adjustment", Integer, nullable=False, server_default="0"),
    # The memo that corrected the invoice for this late event (adjustment 2: done).
    Column("corrected_by", String(64)),
    UniqueConstraint("source", "event_id", name="uq_usage_events_source_event_id"),
    Index("ix_usage_events_customer_type_time", "customer_id", "event_type", "timestamp"),
    Index("ix_usage_events_correlation_id", "correlation_id"),
    # A period's events by event time alone (the finance overview). BRIN on PostgreSQL:
    # events arrive in about time order, so block ranges summarise them in a few pages
    # and ingest barely pays for it.
    Index("ix_usage_events_timestamp", "timestamp", postgresql_using="brin"),
    # Late events waiting for a correction: a handful, so a small partial index.
    Index(
        "ix_usage_events_late",
        "timestamp",
        sqlite_where=text("adjustment = 1"),
        postgresql_where=text("adjustment = 1"),
    ),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer),
    Column("content_type", String(128)),
    Column("body", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("period", String(7), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # queued | running | completed | failed
    Column("customer_ids", JSONDoc),
    Column("counts", JSONDoc, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    # The runner executing the run holds a lease it renews; a crashed runner's lease runs
    # out and another runner resumes the run.
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime),
    Column("error", String(1000)),
)

invoice_numbers = Table(
    "invoice_numbers",
    metadata,
    Column("legal_entity_id", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("last_number", Integer, nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("number", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # invoice | credit_memo | debit_memo
    Column("run_id", String(64), ForeignKey("billing_runs.id"), index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("subscription_id", String(64), nullable=False),
    Column("legal_entity_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("subtotal", DecimalText, nullable=False),
    Column("tax_total", DecimalText, nullable=False),
    Column("total", DecimalText, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("erp_document_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finalized_at", UTCDateTime),
    Column("posted_at", UTCDateTime),
    Column("corrects_invoice_id", String(64), ForeignKey("invoices.id")),
    Column("amount_paid", DecimalText),  # null: nothing received
    Column("paid_at", UTCDateTime),
    Column("voided_at", UTCDateTime),
    Column("void_reason", String(500)),
    # One invoice per subscription, period, legal entity and currency: re-runs add
    # nothing. Memos are not limited: a period may be corrected more than once.
    Index(
        "uq_invoices_subscription_period",
        "subscription_id",
        "period_start",
        "legal_entity_id",
        "currency",
        unique=True,
        sqlite_where=text("kind = 'invoice'"),
        postgresql_where=text("kind = 'invoice'"),
    ),
    Index("ix_invoices_corrects_invoice_id", "corrects_invoice_id"),
    # Revenue schedules read what was posted since their cursor.
    Index("ix_invoices_posted_at", "posted_at"),
    # The billing runner looks for drafts past their grace window every round.
    Index(
        "ix_invoices_drafts",
        "period_start",
        sqlite_where=text("status = 'draft'"),
        postgresql_where=text("status = 'draft'"),
    ),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("charge_code", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("description", String(500), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("meter_code", String(64)),
    Column("event_type", String(200)),
    Column("quantity", DecimalText, nullable=False),
    Column("unit_price", DecimalText),
    Column("amount", DecimalText, nullable=False),
    Column("tax_rate", DecimalText, nullable=False),
    Column("tax_amount", DecimalText, nullable=False),
    Column("tax_jurisdiction", String(64), nullable=False),
    Column("tax_kind", String(32), nullable=False),
    Column("tax_note", String(500)),
    Column("event_count", Integer, nullable=False),
    Column("service_start", Date),
    Column("service_end", Date),
)

postings = Table(
    "erp_postings",
    metadata,
    Column("invoice_id", String(64), ForeignKey("invoices.id"), primary_key=True),
    Column("status", String(16), nullable=False),  # pending | posted | failed
    Column("attempts", Integer, nullable=False),
    Column("erp_document_id", String(64)),
    Column("last_error", String(1000)),
    Column("correlation_id", String(128)),
    Column("updated_at", UTCDateTime, nullable=False),
    # Not tried again before this time (backoff after transient failures); null: now.
    Column("next_attempt_at", UTCDateTime),
    # The outbox worker posting the document holds a lease, so that two workers never
    # send it at once; a crashed worker's lease runs out.
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime),
    Index("ix_erp_postings_due", "status", "next_attempt_at"),
)

# Payments seen in the ERP, each applied once to the invoice it pays (null: a document
# Meterline did not post).
invoice_payments = Table(
    "invoice_payments",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), index=True),
    Column("amount", DecimalText, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("received_on", Date, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

# Where a follower of another system's feed resumes (the ERP's payments).
sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

exceptions = Table(
    "exceptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("subject", String(255), nullable=False),  # what it is about: a customer, an invoice
    Column("status", String(16), nullable=False),  # open | resolved
    Column("detail", String(1000), nullable=False),
    Column("context", JSONDoc, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    # Who closed it by hand (an OAuth client) and why; null when closed by the system
    # (the mapping appeared, the retried posting went through).
    Column("resolved_by", String(128)),
    Column("resolution", String(1000)),
    UniqueConstraint("kind", "subject", name="uq_exceptions_kind_subject"),
)

# The latest reconciliation of each period, the report as it was made: readers (the
# finance overview and page) show it without reconciling again, which would call the ERP
# and count another occurrence of every standing variance.
reconciliation_reports = Table(
    "reconciliation_reports",
    metadata,
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("status", String(16), nullable=False),  # balanced | variances
    Column("generated_at", UTCDateTime, nullable=False),
    Column("report", JSONDoc, nullable=False),  # the ReconciliationReport
    Column("correlation_id", String(128)),  # the request that reconciled
)
