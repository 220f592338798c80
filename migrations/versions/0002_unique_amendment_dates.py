"""one amendment per subscription and effective date

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_amendments") as batch:
        batch.drop_index("ix_crm_amendments_subscription_effective")
        batch.create_index(
            "ix_crm_amendments_subscription_effective",
            ["subscription_id", "effective_from"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_amendments") as batch:
        batch.drop_index("ix_crm_amendments_subscription_effective")
        batch.create_index(
            "ix_crm_amendments_subscription_effective", ["subscription_id", "effective_from"]
        )
