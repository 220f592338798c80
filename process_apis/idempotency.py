"""Idempotency keys (draft-ietf-httpapi-idempotency-key-header, Stripe semantics).

Keys are scoped per OAuth client and kept ``ttl`` (at least 24 h). The first request
with a key claims it (``in_flight``) and stores its response when done; the same key
and fingerprint replays that response; a different fingerprint is
``IdempotencyKeyReused``; a key still in flight is ``IdempotencyInFlight``. A request
that fails (a problem answer, a 5xx) releases its key instead of storing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import errors
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.tables import idempotency_keys

__all__ = [
    "DatabaseIdempotencyStore",
    "IdempotencyStore",
    "StoredResponse",
    "fingerprint",
    "run_idempotent",
]


class StoredResponse(msgspec.Struct, frozen=True):
    status_code: int
    content_type: str
    body: bytes


class IdempotencyStore(Protocol):
    async def claim(self, client_id: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim ``key`` (None) or return the stored response to replay; raises on clashes."""

    async def complete(self, client_id: str, key: str, response: StoredResponse) -> None: ...

    async def release(self, client_id: str, key: str) -> None: ...


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class DatabaseIdempotencyStore:
    def __init__(self, sessions: async_sessionmaker, ttl: timedelta = timedelta(hours=48)) -> None:
        self._sessions = sessions
        self._ttl = ttl

    async def claim(self, client_id: str, key: str, fingerprint: str) -> StoredResponse | None:
        now = utcnow()
        row_key = (idempotency_keys.c.client_id == client_id) & (idempotency_keys.c.key == key)
        async with self._sessions.begin() as session:
            # An expired key is forgotten first, so it can be claimed afresh.
            await session.execute(
                sa.delete(idempotency_keys).where(row_key, idempotency_keys.c.expires_at < now)
            )
            claimed = await session.execute(
                insert_ignore(idempotency_keys, session.bind.dialect.name, ["client_id", "key"])
                .values(
                    client_id=client_id,
                    key=key,
                    fingerprint=fingerprint,
                    state="in_flight",
                    created_at=now,
                    expires_at=now + self._ttl,
                )
                .returning(idempotency_keys.c.key)
            )
            if claimed.first() is not None:
                return None
            row = (await session.execute(sa.select(idempotency_keys).where(row_key))).one()
        if row.fingerprint != fingerprint:
            raise errors.IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was first used with a different request"
            )
        if row.state != "done":
            raise errors.IdempotencyInFlight(
                f"the first request with Idempotency-Key {key!r} is still in progress"
            )
        return StoredResponse(row.status_code, row.content_type, row.body)

    async def complete(self, client_id: str, key: str, response: StoredResponse) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(idempotency_keys)
                .where(idempotency_keys.c.client_id == client_id, idempotency_keys.c.key == key)
                .values(
                    state="done",
                    status_code=response.status_code,
                    content_type=response.content_type,
                    body=response.body,
                )
            )

    async def release(self, client_id: str, key: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.client_id == client_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.state == "in_flight",
                )
            )


async def run_idempotent(
    store: IdempotencyStore,
    client_id: str,
    key: str,
    request_fingerprint: str,
    produce: Callable[[], Awaitable[StoredResponse]],
) -> tuple[StoredResponse, bool]:
    """Run ``produce`` once per key; returns (response, replayed).

    Only completed responses below 500 are stored. A request that raised (a problem
    answer) releases its key, so the client may retry it, corrected or not."""
    stored = await store.claim(client_id, key, request_fingerprint)
    if stored is not None:
        return stored, True
    try:
        response = await produce()
        if response.status_code < 500:
            # Inside the ``try``: were storing to fail, the key must be released like
            # any failed request's, not answer "in flight" to every retry until it expires.
            await store.complete(client_id, key, response)
            return response, False
    except BaseException:
        await store.release(client_id, key)
        raise
    await store.release(client_id, key)
    return response, False
