"""Tables of the reference billing engine: meters and price plans."""

from sqlalchemy import Column, String, Table

from canonical.persistence import JSONDoc, UTCDateTime, new_metadata

metadata = new_metadata()

meters = Table(
    "billing_meters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("event_type", String(200), nullable=False, index=True),
    Column("aggregation", String(16), nullable=False),
    Column("field", String(200)),
    Column("unit", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

plans = Table(
    "billing_plans",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("charges", JSONDoc, nullable=False),  # the plan's tagged charge list, as given
    Column("created_at", UTCDateTime, nullable=False),
)
