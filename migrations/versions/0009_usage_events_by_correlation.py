"""usage events found by the correlation ID of the request that sent them (tracing); late
events waiting for a correction, and the memo that corrected them

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The events of one request share one correlation ID and are stored together, so
    # each batch adds one run of entries to this index, not one random write per event.
    op.create_index("ix_usage_events_correlation_id", "usage_events", ["correlation_id"])
    # Nullable, no default: instant on a large table.
    op.add_column("usage_events", sa.Column("corrected_by", sa.String(length=64), nullable=True))
    late = sa.text("adjustment = 1")
    op.create_index(
        "ix_usage_events_late",
        "usage_events",
        ["timestamp"],
        sqlite_where=late,
        postgresql_where=late,
    )


def downgrade() -> None:
    op.drop_index("ix_usage_events_late", table_name="usage_events")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("corrected_by")
    op.drop_index("ix_usage_events_correlation_id", table_name="usage_events")
