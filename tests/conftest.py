"""Shared fixtures: a throwaway database per test on SQLite (always) and PostgreSQL (when
reachable), and a throwaway Redis key space.

On a machine without PostgreSQL or Redis those tests skip with the reason; under
``CI=true`` they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.databases import (
    postgres_admin_url,
    postgres_available,
    redis_available,
    throwaway_postgres,
    throwaway_sqlite,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(service: str, reason: str) -> None:
    message = f"{service} unavailable: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: required)")
    pytest.skip(message)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request, tmp_path):
    """A migrated, empty database URL, once per backend."""
    if request.param == "sqlite":
        async with throwaway_sqlite(tmp_path) as url:
            yield url
        return
    ok, reason = await postgres_available()
    if not ok:
        _unavailable("PostgreSQL", reason)
    async with throwaway_postgres(postgres_admin_url()) as url:
        yield url


@pytest.fixture
async def sqlite_url(tmp_path):
    async with throwaway_sqlite(tmp_path) as url:
        yield url


@pytest.fixture
async def redis_url():
    """A Redis URL plus a unique key prefix in ``REDIS_KEY_PREFIX``; keys are deleted after."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    ok, reason = await redis_available(url)
    if not ok:
        _unavailable("Redis", reason)
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
