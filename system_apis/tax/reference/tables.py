"""Tables of the reference tax engine: a log of every quote it gave (tax audit trail)."""

from sqlalchemy import Column, String, Table

from canonical.persistence import JSONDoc, UTCDateTime, new_metadata

metadata = new_metadata()

quotes = Table(
    "tax_quotes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("request", JSONDoc, nullable=False),
    Column("response", JSONDoc, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("created_at", UTCDateTime, nullable=False),
)
