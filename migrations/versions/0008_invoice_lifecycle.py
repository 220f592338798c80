"""invoice lifecycle: memos correcting documents, payments received, voids; one invoice
(not one memo) per subscription, period, legal entity and currency

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

import canonical.persistence

revision = "0008"
down_revision = "0006"
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


def downgrade() -> None:
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
