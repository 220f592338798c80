"""revenue schedules: the service days of invoice lines, the schedules recognising each
posted document's revenue, the journals booking them, and their entries in the ERP

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from canonical.persistence import DecimalText, JSONDoc, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant on a large table; older lines mean the whole period.
    op.add_column("invoice_lines", sa.Column("service_start", sa.Date(), nullable=True))
    op.add_column("invoice_lines", sa.Column("service_end", sa.Date(), nullable=True))
    op.create_table(
        "revenue_schedules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "document_id", sa.String(64), sa.ForeignKey("invoices.id"), nullable=False, index=True
        ),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("legal_entity_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("service_start", sa.Date(), nullable=False),
        sa.Column("service_end", sa.Date(), nullable=False),
        sa.Column("amount", DecimalText(), nullable=False),
        sa.Column("weights", JSONDoc()),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("last_entry_on", sa.Date(), nullable=False),
        sa.Column("booked_through", sa.Date()),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_revenue_schedules_due", "revenue_schedules", ["booked_through"])
    op.create_table(
        "revenue_journals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("legal_entity_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("lines", JSONDoc(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("erp_journal_id", sa.String(64)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("posted_at", UTCDateTime()),
    )
    op.create_index(
        "ix_revenue_journals_status", "revenue_journals", ["status", "posting_date"]
    )
    op.create_table(
        "erp_revenue_journals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("external_ref", sa.String(128), nullable=False),
        sa.Column(
            "legal_entity_id",
            sa.String(64),
            sa.ForeignKey("erp_legal_entities.id"),
            nullable=False,
        ),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column(
            "journal_entry_id",
            sa.String(64),
            sa.ForeignKey("erp_journal_entries.id"),
            nullable=False,
        ),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("external_ref", name="uq_erp_revenue_journals_external_ref"),
        sa.UniqueConstraint(
            "journal_entry_id", name="uq_erp_revenue_journals_journal_entry_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("erp_revenue_journals")
    op.drop_index("ix_revenue_journals_status", table_name="revenue_journals")
    op.drop_table("revenue_journals")
    op.drop_index("ix_revenue_schedules_due", table_name="revenue_schedules")
    op.drop_table("revenue_schedules")
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_column("service_end")
        batch.drop_column("service_start")
