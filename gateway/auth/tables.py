"""Tables owned by the gateway's authorization server: OAuth clients and signing keys."""

from sqlalchemy import Boolean, Column, String, Table, Text

from canonical.persistence import UTCDateTime, new_metadata

metadata = new_metadata()

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    # Argon2id hash; the secret itself is shown once, at creation, and never stored.
    Column("secret_hash", String(255), nullable=False),
    # Space-separated, as in the ``scope`` parameter of RFC 6749.
    Column("scopes", Text, nullable=False),
    Column("partner_id", String(64)),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    # Private JWK (JSON). Shared by every gateway instance through the database.
    Column("private_jwk", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Set when a newer key takes over signing; the key stays in the JWKS until every
    # token it signed has expired.
    Column("retired_at", UTCDateTime),
)
