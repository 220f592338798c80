"""The OAuth client registry: confidential clients with hashed secrets, their allowed
scopes and, for partners, the tenant they are confined to."""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import errors
from canonical.access import PARTNER_SCOPES, SCOPES
from canonical.ids import new_id
from canonical.time import utcnow
from gateway.auth.tables import oauth_clients

__all__ = [
    "ClientRegistry",
    "IssuedCredentials",
    "OAuthClient",
    "RegisteredClient",
    "unknown_client",
]

# Argon2id with the library's defaults (RFC 9106 "low memory" profile): a stolen table
# of hashes does not yield secrets.
_hasher = PasswordHasher()

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class RegisteredClient(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    name: str
    scopes: tuple[str, ...]
    partner_id: str | None
    active: bool
    created_at: datetime
    secret_hash: str = ""


class IssuedCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What ``create`` returns: the only time the secret is ever visible."""

    client_id: str
    client_secret: str
    name: str
    scopes: tuple[str, ...]
    partner_id: str | None


class OAuthClient(ClientMixin):
    """A registered client as Authlib's authorization server sees it."""

    def __init__(self, record: RegisteredClient) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        # No ``scope`` asked for: the token carries everything the client may hold.
        if not scope:
            return " ".join(self.record.scopes)
        asked = scope.split()
        return " ".join(s for s in self.record.scopes if s in asked)

    def allows_scope(self, scope: str | None) -> bool:
        return not scope or set(scope.split()) <= set(self.record.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        try:
            return _hasher.verify(self.record.secret_hash, client_secret)
        except (VerificationError, InvalidHashError):
            return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials" and self.record.active


_decoy_hash: str | None = None


def unknown_client(client_id: str) -> OAuthClient:
    """Stands in for a client_id nobody registered: its secret check costs the same Argon2
    verification as a real one and always fails, so answer times do not tell which
    client ids exist."""
    global _decoy_hash
    if _decoy_hash is None:
        _decoy_hash = _hasher.hash(secrets.token_urlsafe(32))
    return OAuthClient(
        RegisteredClient(
            client_id=client_id,
            name="unknown",
            scopes=(),
            partner_id=None,
            active=False,
            created_at=utcnow(),
            secret_hash=_decoy_hash,
        )
    )


def _validate_scopes(scopes: tuple[str, ...], partner_id: str | None) -> None:
    unknown = sorted(set(scopes) - SCOPES.keys())
    if unknown:
        raise errors.InvalidRequest(f"unknown scopes: {' '.join(unknown)}")
    if not scopes:
        raise errors.InvalidRequest("a client needs at least one scope")
    if partner_id is not None and not partner_id.strip():
        # An empty partner would be dropped from the token and the client read every
        # tenant's data (``--partner "$UNSET_VARIABLE"``).
        raise errors.InvalidRequest("a partner client needs a partner id")
    if partner_id is not None and not set(scopes) <= PARTNER_SCOPES:
        # Only tenant-filtered APIs may be opened to a partner.
        raise errors.InvalidRequest(
            f"a partner client may only hold {' '.join(sorted(PARTNER_SCOPES))}"
        )


def _record(row) -> RegisteredClient:
    return RegisteredClient(
        client_id=row.client_id,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        partner_id=row.partner_id,
        active=bool(row.active),
        created_at=row.created_at,
        secret_hash=row.secret_hash,
    )


class ClientRegistry:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def create(
        self,
        name: str,
        scopes: list[str] | tuple[str, ...],
        *,
        partner_id: str | None = None,
        client_id: str | None = None,
    ) -> IssuedCredentials:
        scopes = tuple(dict.fromkeys(scopes))
        _validate_scopes(scopes, partner_id)
        client_id = client_id or new_id("cli")
        secret = secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            existing = await session.execute(
                sa.select(oauth_clients.c.client_id).where(oauth_clients.c.client_id == client_id)
            )
            if existing.first() is not None:
                raise errors.Conflict(f"client {client_id} already exists")
            await session.execute(
                oauth_clients.insert().values(
                    client_id=client_id,
                    name=name,
                    secret_hash=_hasher.hash(secret),
                    scopes=" ".join(scopes),
                    partner_id=partner_id,
                    active=True,
                    created_at=utcnow(),
                )
            )
        return IssuedCredentials(
            client_id=client_id,
            client_secret=secret,
            name=name,
            scopes=scopes,
            partner_id=partner_id,
        )

    async def reset_secret(self, client_id: str) -> IssuedCredentials:
        """A new secret for an existing client; the old one stops working at once."""
        secret = secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            result = await session.execute(
                oauth_clients.update()
                .where(oauth_clients.c.client_id == client_id)
                .values(secret_hash=_hasher.hash(secret))
            )
            if result.rowcount == 0:
                raise errors.NotFound(f"client {client_id} not found")
        record = await self.get(client_id)
        return IssuedCredentials(
            client_id=client_id,
            client_secret=secret,
            name=record.name,
            scopes=record.scopes,
            partner_id=record.partner_id,
        )

    async def set_active(self, client_id: str, active: bool) -> None:
        async with self._sessions.begin() as session:
            result = await session.execute(
                oauth_clients.update()
                .where(oauth_clients.c.client_id == client_id)
                .values(active=active)
            )
            if result.rowcount == 0:
                raise errors.NotFound(f"client {client_id} not found")

    async def find(self, client_id: str) -> RegisteredClient | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(oauth_clients).where(oauth_clients.c.client_id == client_id)
                )
            ).first()
        return _record(row) if row is not None else None

    async def get(self, client_id: str) -> RegisteredClient:
        record = await self.find(client_id)
        if record is None:
            raise errors.NotFound(f"client {client_id} not found")
        return record

    async def list(self) -> list[RegisteredClient]:
        async with self._sessions() as session:
            rows = await session.execute(sa.select(oauth_clients).order_by(oauth_clients.c.name))
        return [_record(row) for row in rows]
