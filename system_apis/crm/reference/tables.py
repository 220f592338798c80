"""Tables of the reference CRM: accounts, subscriptions and their amendments."""

from sqlalchemy import Column, Date, ForeignKey, Index, String, Table

from canonical.persistence import UTCDateTime, new_metadata

metadata = new_metadata()

accounts = Table(
    "crm_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("legal_entity_id", String(64), nullable=False),
    Column("billing_country", String(2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tax_status", String(16), nullable=False),
    Column("tax_id", String(64)),
    Column("us_state", String(2)),
    Column("parent_id", String(64), ForeignKey("crm_accounts.id")),
    Column("partner_id", String(64), index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

subscriptions = Table(
    "crm_subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), ForeignKey("crm_accounts.id"), nullable=False, index=True),
    Column("plan_id", String(64), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

amendments = Table(
    "crm_amendments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subscription_id", String(64), ForeignKey("crm_subscriptions.id"), nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # One amendment per subscription and day: concurrent duplicates cannot both land.
    Index(
        "ix_crm_amendments_subscription_effective",
        "subscription_id",
        "effective_from",
        unique=True,
    ),
)
