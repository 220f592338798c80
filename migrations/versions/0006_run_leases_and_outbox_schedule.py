"""billing runs resumable (leases, error), the ERP outbox scheduled (backoff, leases),
exceptions resolved by hand (who, why)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

import canonical.persistence

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns only: instant on both backends, no rewrite.
    with op.batch_alter_table("billing_runs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("lease_until", canonical.persistence.UTCDateTime(timezone=True))
        )
        batch.add_column(sa.Column("error", sa.String(length=1000), nullable=True))
    with op.batch_alter_table("erp_postings") as batch:
        batch.add_column(
            sa.Column("next_attempt_at", canonical.persistence.UTCDateTime(timezone=True))
        )
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("lease_until", canonical.persistence.UTCDateTime(timezone=True))
        )
        batch.create_index("ix_erp_postings_due", ["status", "next_attempt_at"])
    with op.batch_alter_table("exceptions") as batch:
        batch.add_column(sa.Column("resolved_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("resolution", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exceptions") as batch:
        batch.drop_column("resolution")
        batch.drop_column("resolved_by")
    with op.batch_alter_table("erp_postings") as batch:
        batch.drop_index("ix_erp_postings_due")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
        batch.drop_column("next_attempt_at")
    with op.batch_alter_table("billing_runs") as batch:
        batch.drop_column("error")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
