"""usage events flagged for adjustment (received for an already-invoiced period)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default: instant on both backends, no rewrite
    # of a large events table.
    op.add_column(
        "usage_events",
        sa.Column("adjustment", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("adjustment")
