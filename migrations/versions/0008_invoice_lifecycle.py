"""invoice lifecycle: memos correcting documents, payments received (and the ERP payments
seen), voids; one invoice (not one memo) per subscription, period, legal entity and
currency

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

import canonical.persistence

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_KEY = ["subscription_id", "period_start", "legal_entity_id", "currency"]
_INVOICES_ONLY = sa.text("kind = 'invoice'")


def upgrade() -> None:
    # SQLite rebuilds the table to drop the old constraint (batch mode).
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("corrects_invoice_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("amount_paid", canonical.persistence.DecimalText(length=64), nullable=True)
        )
        batch.add_column(sa.Column("paid_at", canonical.persistence.UTCDateTime(timezone=True)))
        batch.add_column(sa.Column("voided_at", canonical.persistence.UTCDateTime(timezone=True)))
        batch.add_column(sa.Column("void_reason", sa.String(length=500), nullable=True))
        batch.create_foreign_key(
            "fk_invoices_corrects_invoice_id_invoices", "invoices", ["corrects_invoice_id"], ["id"]
        )
        batch.drop_constraint("uq_invoices_subscription_period", type_="unique")
    op.create_index(
        "uq_invoices_subscription_period",
        "invoices",
        _KEY,
        unique=True,
        sqlite_where=_INVOICES_ONLY,
        postgresql_where=_INVOICES_ONLY,
    )
    op.create_index("ix_invoices_corrects_invoice_id", "invoices", ["corrects_invoice_id"])
    op.create_table(
        "invoice_payments",
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("amount", canonical.persistence.DecimalText(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("recorded_at", canonical.persistence.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_payments_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_invoice_payments")),
    )
    op.create_index(
        op.f("ix_invoice_payments_invoice_id"), "invoice_payments", ["invoice_id"], unique=False
    )
    op.create_table(
        "sync_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=255), nullable=False),
        sa.Column("updated_at", canonical.persistence.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
    op.drop_index(op.f("ix_invoice_payments_invoice_id"), table_name="invoice_payments")
    op.drop_table("invoice_payments")
    op.drop_index("ix_invoices_corrects_invoice_id", table_name="invoices")
    op.drop_index("uq_invoices_subscription_period", table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.create_unique_constraint("uq_invoices_subscription_period", [*_KEY, "kind"])
        batch.drop_constraint("fk_invoices_corrects_invoice_id_invoices", type_="foreignkey")
        batch.drop_column("void_reason")
        batch.drop_column("voided_at")
        batch.drop_column("paid_at")
        batch.drop_column("amount_paid")
        batch.drop_column("corrects_invoice_id")
