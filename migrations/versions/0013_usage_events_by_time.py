"""usage events found by event time alone: a period's events for the finance overview
without reading the whole store (a BRIN index on PostgreSQL, where events arrive in
roughly time order; a B-tree on SQLite)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_usage_events_timestamp", "usage_events", ["timestamp"], postgresql_using="brin"
    )


def downgrade() -> None:
    op.drop_index("ix_usage_events_timestamp", table_name="usage_events")
