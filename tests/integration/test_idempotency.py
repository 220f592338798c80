"""Idempotency-Key semantics of the design, on the database store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from canonical import errors
from process_apis.idempotency import DatabaseIdempotencyStore, StoredResponse, run_idempotent


@pytest.fixture
def store(sessions):
    return DatabaseIdempotencyStore(sessions)


async def test_same_key_same_request_replays_the_stored_response(store):
    calls = []

    async def produce():
        calls.append(1)
        return StoredResponse(201, "application/json", b'{"n":1}')

    first, replayed = await run_idempotent(store, "client-a", "k1", "fp", produce)
    again, replayed_again = await run_idempotent(store, "client-a", "k1", "fp", produce)
    assert (replayed, replayed_again) == (False, True)
    assert again == first and len(calls) == 1


async def test_same_key_different_payload_is_refused(store):
    async def produce():
        return StoredResponse(201, "application/json", b"{}")

    await run_idempotent(store, "client-a", "k1", "fp-1", produce)
    with pytest.raises(errors.IdempotencyKeyReused):
        await run_idempotent(store, "client-a", "k1", "fp-2", produce)


async def test_keys_are_scoped_per_client(store):
    async def produce():
        return StoredResponse(201, "application/json", b"{}")

    await run_idempotent(store, "client-a", "k1", "fp-1", produce)
    _, replayed = await run_idempotent(store, "client-b", "k1", "fp-2", produce)
    assert replayed is False


async def test_same_key_while_in_flight_is_a_conflict(store):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow():
        started.set()
        await release.wait()
        return StoredResponse(201, "application/json", b"{}")

    first = asyncio.create_task(run_idempotent(store, "client-a", "k1", "fp", slow))
    await started.wait()
    with pytest.raises(errors.IdempotencyInFlight):
        await run_idempotent(store, "client-a", "k1", "fp", slow)
    release.set()
    await first


async def test_a_failed_request_releases_its_key(store):
    async def boom():
        raise errors.SystemUnavailable("erp down")

    with pytest.raises(errors.SystemUnavailable):
        await run_idempotent(store, "client-a", "k1", "fp", boom)

    async def ok():
        return StoredResponse(201, "application/json", b"{}")

    _, replayed = await run_idempotent(store, "client-a", "k1", "fp", ok)
    assert replayed is False
