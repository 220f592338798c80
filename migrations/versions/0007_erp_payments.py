"""ERP customer payments (debit bank, credit AR) and the counter that orders them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from canonical.persistence import DecimalText, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: nothing existing is rewritten (a payment's journal entry goes to
    # the existing ledger tables, its running total to erp_documents.amount_paid).
    op.create_table(
        "erp_payments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(128), nullable=False),
        sa.Column("document_id", sa.String(64), nullable=False),
        sa.Column("amount", DecimalText(length=64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("method", sa.String(64), nullable=True),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("document_amount_paid", DecimalText(length=64), nullable=False),
        sa.Column("journal_entry_id", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["erp_documents.id"],
            name="fk_erp_payments_document_id_erp_documents",
        ),
        sa.ForeignKeyConstraint(
            ["journal_entry_id"],
            ["erp_journal_entries.id"],
            name="fk_erp_payments_journal_entry_id_erp_journal_entries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_erp_payments"),
        sa.UniqueConstraint("seq", name="uq_erp_payments_seq"),
        sa.UniqueConstraint("external_ref", name="uq_erp_payments_external_ref"),
        sa.UniqueConstraint("journal_entry_id", name="uq_erp_payments_journal_entry_id"),
    )
    op.create_index("ix_erp_payments_document_id", "erp_payments", ["document_id"])
    counter = op.create_table(
        "erp_payment_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_erp_payment_counter_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_erp_payment_counter"),
    )
    # No payment yet: the first one recorded moves the counter to seq 1.
    op.bulk_insert(counter, [{"id": 1, "seq": 0}])


def downgrade() -> None:
    op.drop_table("erp_payment_counter")
    op.drop_index("ix_erp_payments_document_id", table_name="erp_payments")
    op.drop_table("erp_payments")
