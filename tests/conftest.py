"""Shared fixtures: a throwaway database per test on SQLite (always) and PostgreSQL (when
reachable), an engine and sessions on it, a throwaway Redis key space, and cheap Argon2
for every test (see tests/support/hashing.py).

On a machine without PostgreSQL or Redis those tests skip with the reason; under
``CI=true`` they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from canonical.persistence import create_engine, session_factory
from tests.support.databases import (
    drop_templates,
    postgres_admin_url,
    postgres_available,
    redis_available,
    throwaway_postgres,
    throwaway_sqlite,
)
from tests.support.hashing import cheap_argon2  # noqa: F401  (autouse)

IN_CI = os.environ.get("CI", "").lower() == "true"

# Whether a service answered, asked once per session rather than once per test.
_availability: dict[str, tuple[bool, str]] = {}


def _unavailable(service: str, reason: str) -> None:
    message = f"{service} unavailable: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: required)")
    pytest.skip(message)


async def _require(service: str, check) -> None:
    if service not in _availability:
        _availability[service] = await check()
    ok, reason = _availability[service]
    if not ok:
        _unavailable(service, reason)


def pytest_sessionfinish(session, exitstatus):
    asyncio.run(drop_templates())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request, tmp_path):
    """A migrated, empty database URL, once per backend."""
    if request.param == "sqlite":
        async with throwaway_sqlite(tmp_path) as url:
            yield url
        return
    await _require("PostgreSQL", postgres_available)
    async with throwaway_postgres(postgres_admin_url()) as url:
        yield url


@pytest.fixture
async def sqlite_url(tmp_path):
    async with throwaway_sqlite(tmp_path) as url:
        yield url


@pytest.fixture
async def engine(database_url):
    """An engine on ``database_url``, disposed after the test."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


@pytest.fixture
async def redis_url():
    """``(url, prefix)``: a Redis URL and a unique key prefix; keys under it are deleted
    after the test."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    await _require("Redis", lambda: redis_available(url))
    prefix = f"meterline-test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
