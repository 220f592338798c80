"""Tables of the reference ERP: legal entities, customers, items, periods, AR documents,
customer payments and the general ledger (journal entries and their lines)."""

from sqlalchemy import CheckConstraint, Column, Date, ForeignKey, Integer, String, Table

from canonical.persistence import DecimalText, UTCDateTime, new_metadata

__all__ = [
    "PAYMENT_COUNTER_ID",
    "customers",
    "document_lines",
    "documents",
    "items",
    "journal_entries",
    "journal_lines",
    "legal_entities",
    "metadata",
    "payment_counter",
    "payments",
    "periods",
    "revenue_journals",
]

metadata = new_metadata()

legal_entities = Table(
    "erp_legal_entities",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country", String(2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("vat_id", String(64)),
    Column("us_state", String(2)),
)

customers = Table(
    "erp_customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

items = Table(
    "erp_items",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("revenue_account", String(32), nullable=False),
)

periods = Table(
    "erp_periods",
    metadata,
    Column("legal_entity_id", String(64), ForeignKey("erp_legal_entities.id"), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("status", String(8), nullable=False),  # open | closed
    Column("updated_at", UTCDateTime, nullable=False),
)

documents = Table(
    "erp_documents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("external_ref", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("customer_id", String(64), ForeignKey("erp_customers.id"), nullable=False, index=True),
    Column("legal_entity_id", String(64), ForeignKey("erp_legal_entities.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("posting_date", Date, nullable=False),
    Column("net_total", DecimalText, nullable=False),
    Column("tax_total", DecimalText, nullable=False),
    Column("total", DecimalText, nullable=False),
    Column("amount_paid", DecimalText, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("created_at", UTCDateTime, nullable=False),
)

document_lines = Table(
    "erp_document_lines",
    metadata,
    Column("document_id", String(64), ForeignKey("erp_documents.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("item_code", String(64), ForeignKey("erp_items.code"), nullable=False),
    Column("description", String(500), nullable=False),
    Column("amount", DecimalText, nullable=False),
    Column("tax_amount", DecimalText, nullable=False),
)

journal_entries = Table(
    "erp_journal_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("document_id", String(64), ForeignKey("erp_documents.id"), index=True),
    Column("legal_entity_id", String(64), ForeignKey("erp_legal_entities.id"), nullable=False),
    Column("posting_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("correlation_id", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
)

journal_lines = Table(
    "erp_journal_lines",
    metadata,
    Column("entry_id", String(64), ForeignKey("erp_journal_entries.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("account", String(32), nullable=False, index=True),
    Column("debit", DecimalText, nullable=False),
    Column("credit", DecimalText, nullable=False),
)

# A payment's journal entry carries the paid document's id too (it settles that
# document); the document's own posting entry is the one no payment references.
payments = Table(
    "erp_payments",
    metadata,
    Column("id", String(64), primary_key=True),
    # Commit order (see payment_counter): the order of ``list_payments``.
    Column("seq", Integer, nullable=False, unique=True),
    Column("external_ref", String(128), nullable=False, unique=True),
    Column("document_id", String(64), ForeignKey("erp_documents.id"), nullable=False, index=True),
    Column("amount", DecimalText, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("received_on", Date, nullable=False),
    Column("method", String(64)),
    Column("reference", String(200)),
    # What the document had received right after this payment (this one included).
    Column("document_amount_paid", DecimalText, nullable=False),
    Column(
        "journal_entry_id",
        String(64),
        ForeignKey("erp_journal_entries.id"),
        nullable=False,
        unique=True,
    ),
    Column("correlation_id", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
)

PAYMENT_COUNTER_ID = 1

# One row (``id = 1``): the last payment ``seq`` handed out. Recording a payment moves
# it forward first thing in its transaction, so payments are recorded one at a time and
# their ``seq`` follows commit order without gaps: a reader resuming after a seq it saw
# can never miss a payment committed later with a smaller one.
payment_counter = Table(
    "erp_payment_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    CheckConstraint(f"id = {PAYMENT_COUNTER_ID}", name="single_row"),
)

# A revenue recognition journal: its entry (no document) and the ref it was posted under.
revenue_journals = Table(
    "erp_revenue_journals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("external_ref", String(128), nullable=False, unique=True),
    Column("legal_entity_id", String(64), ForeignKey("erp_legal_entities.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("posting_date", Date, nullable=False),
    Column("description", String(500), nullable=False),
    Column(
        "journal_entry_id",
        String(64),
        ForeignKey("erp_journal_entries.id"),
        nullable=False,
        unique=True,
    ),
    Column("correlation_id", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
)
