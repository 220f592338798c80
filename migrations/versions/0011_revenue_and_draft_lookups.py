"""revenue schedules unique per document line; invoices found by posting time (revenue
scheduling) and drafts found by period (the grace window)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revenue_schedules") as batch:
        batch.create_unique_constraint("uq_revenue_schedules_line_id", ["line_id"])
    op.create_index("ix_invoices_posted_at", "invoices", ["posted_at"])
    drafts = sa.text("status = 'draft'")
    op.create_index(
        "ix_invoices_drafts",
        "invoices",
        ["period_start"],
        sqlite_where=drafts,
        postgresql_where=drafts,
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_drafts", table_name="invoices")
    op.drop_index("ix_invoices_posted_at", table_name="invoices")
    with op.batch_alter_table("revenue_schedules") as batch:
        batch.drop_constraint("uq_revenue_schedules_line_id", type_="unique")
