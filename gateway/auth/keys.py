"""Signing keys of the built-in authorization server, shared by every gateway instance
through the database.

The newest unretired key signs. ``rotate`` makes a new key the signer and retires the
others; a retired key stays in the JWKS (so tokens it signed keep validating) until the
longest-lived of them has expired, then it is deleted."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from joserfc.jwk import RSAKey
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.ids import new_id
from canonical.time import utcnow
from gateway.auth.tables import signing_keys

__all__ = ["ALGORITHM", "KeyRing"]

# RS256: the algorithm RFC 9068 requires every resource server to support.
ALGORITHM = "RS256"
KEY_BITS = 2048
FORCED_RELOAD_MIN_SECONDS = 5.0


class _Entry(msgspec.Struct, frozen=True):
    kid: str
    key: RSAKey
    created_at: datetime
    retired_at: datetime | None


class KeyRing:
    def __init__(
        self,
        sessions: async_sessionmaker,
        *,
        token_ttl: timedelta,
        reload_every: float = 30.0,
    ) -> None:
        self._sessions = sessions
        # Other instances may rotate: a retired key must outlive its tokens plus the time
        # an instance may keep signing with it before it reloads.
        self._grace = token_ttl + timedelta(seconds=reload_every) + timedelta(minutes=1)
        self._reload_every = reload_every
        self._entries: dict[str, _Entry] = {}
        self._loaded_at = float("-inf")
        # Last reload forced by an unknown ``kid`` (throttled on its own: a periodic load
        # that happened just before another instance rotated must not delay the new key).
        self._forced_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        async with self._sessions() as session:
            rows = (await session.execute(sa.select(signing_keys))).all()
        now = utcnow()
        self._entries = {
            row.kid: _Entry(
                kid=row.kid,
                key=RSAKey.import_key(msgspec.json.decode(row.private_jwk)),
                created_at=row.created_at,
                retired_at=row.retired_at,
            )
            for row in rows
            if row.retired_at is None or row.retired_at + self._grace > now
        }
        self._loaded_at = time.monotonic()

    async def _fresh(self, *, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at > self._reload_every:
            async with self._lock:
                if force or time.monotonic() - self._loaded_at > self._reload_every:
                    await self._load()

    def _signer(self) -> _Entry | None:
        active = [e for e in self._entries.values() if e.retired_at is None]
        return max(active, key=lambda e: (e.created_at, e.kid)) if active else None

    async def signing_key(self) -> RSAKey:
        """The key new tokens are signed with (created on first use)."""
        await self._fresh()
        signer = self._signer()
        if signer is None:
            await self.rotate()
            signer = self._signer()
        return signer.key

    async def rotate(self) -> str:
        """Make a new key the signer; returns its ``kid``."""
        kid = new_id("key")
        # RSA key generation takes a good fraction of a second: not on the event loop.
        key = await asyncio.to_thread(
            RSAKey.generate_key, KEY_BITS, {"kid": kid, "alg": ALGORITHM, "use": "sig"}
        )
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                signing_keys.update()
                .where(signing_keys.c.retired_at.is_(None))
                .values(retired_at=now)
            )
            await session.execute(
                signing_keys.insert().values(
                    kid=kid,
                    algorithm=ALGORITHM,
                    private_jwk=msgspec.json.encode(key.as_dict(private=True)).decode(),
                    created_at=now,
                )
            )
            # Keys whose every token has expired are of no use to anyone any more.
            await session.execute(
                signing_keys.delete().where(signing_keys.c.retired_at < now - self._grace)
            )
        await self._fresh(force=True)
        return kid

    async def verification_key(self, kid: str) -> RSAKey | None:
        """The published key with this ``kid``; an unknown one triggers one reload, since
        another instance may have rotated."""
        await self._fresh()
        entry = self._entries.get(kid)
        if entry is None:
            await self._reload_for_unknown_kid()
            entry = self._entries.get(kid)
        return entry.key if entry is not None else None

    async def _reload_for_unknown_kid(self) -> None:
        # At most one such reload every few seconds: random ``kid`` values must not
        # become a database query each. Requests waiting on the lock see its result.
        async with self._lock:
            if time.monotonic() - self._forced_at <= FORCED_RELOAD_MIN_SECONDS:
                return
            self._forced_at = time.monotonic()
            await self._load()

    async def jwks(self) -> dict:
        """The public JWK Set (RFC 7517) of every key whose tokens may still be valid."""
        await self.signing_key()  # fresh, and with a signer to publish
        ordered = sorted(self._entries.values(), key=lambda e: e.created_at, reverse=True)
        return {"keys": [e.key.as_dict(private=False) for e in ordered]}
