"""reconciliation reports: the latest reconciliation of each period, kept as it was made,
so that the finance overview shows it without reconciling again

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from canonical.persistence import JSONDoc, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_reports",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("generated_at", UTCDateTime(), nullable=False),
        sa.Column("report", JSONDoc(), nullable=False),
        sa.Column("correlation_id", sa.String(128)),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_reports")
