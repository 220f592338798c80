"""The Redis tier of the view cache against the real Redis (a throwaway key prefix,
removed after each test): views shared between caches (processes), kept under the
prefix for the TTL, and a Redis that does not answer costs a computation, never an
error."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from experience_apis.caching import ViewCache, render
from experience_apis.caching import stores as stores_module
from tests.support.processes import free_port

pytestmark = pytest.mark.redis


async def _doc(total: str) -> dict:
    return {"id": "inv_1", "total": total}


async def test_a_view_computed_by_one_process_is_served_to_another(redis_url):
    url, prefix = redis_url
    one = ViewCache.create(max_bytes=0, ttl=30, redis_url=url, redis_prefix=prefix, namespace="db1")
    two = ViewCache.create(
        max_bytes=1_000_000, ttl=30, redis_url=url, redis_prefix=prefix, namespace="db1"
    )
    try:
        computed = await one.view("portal.invoice:abc", lambda: _doc("1.00"))
        served = await two.view("portal.invoice:abc", lambda: _doc("other"))
        assert served == computed == render({"id": "inv_1", "total": "1.00"})
        assert (one.stats.misses, two.stats.hits, two.stats.misses) == (1, 1, 0)
        # Kept in the second process's memory too: Redis is not asked again.
        await two.view("portal.invoice:abc", lambda: _doc("other"))
        assert two.stats.hits == 2

        client = aioredis.from_url(url)
        try:
            key = f"{prefix}:view:db1:portal.invoice:abc"
            assert await client.get(key) == computed.etag.encode() + b"\n" + computed.body
            assert 0 < await client.ttl(key) <= 30
        finally:
            await client.aclose()
    finally:
        await one.aclose()
        await two.aclose()


async def test_an_unreachable_redis_costs_a_computation_not_an_error(caplog, monkeypatch):
    cache = ViewCache.create(max_bytes=0, ttl=30, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        calls = 0

        async def build():
            nonlocal calls
            calls += 1
            return {"n": calls}

        first = await cache.view("k", build)
        second = await cache.view("k", build)
        assert (first.body, second.body) == (b'{"n":1}', b'{"n":2}')
        assert cache.stats.misses == 2
        # Past the pause between tries, Redis is tried again and still fails: the
        # outage goes on, and is not reported again.
        monkeypatch.setattr(stores_module, "REDIS_RETRY_SECONDS", 0.0)
        for _ in range(3):
            await cache.view("k", build)
        assert calls == 5
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per request or try
    finally:
        await cache.aclose()


async def test_deployments_sharing_a_redis_never_answer_each_others_views(redis_url):
    """Another database (or other code) is another namespace: the same key there is
    another view."""
    url, prefix = redis_url
    demo = ViewCache.create(max_bytes=0, ttl=30, redis_url=url, redis_prefix=prefix, namespace="a")
    staging = ViewCache.create(
        max_bytes=0, ttl=30, redis_url=url, redis_prefix=prefix, namespace="b"
    )
    try:
        await demo.view("portal.invoice:abc", lambda: _doc("1.00"))
        other = await staging.view("portal.invoice:abc", lambda: _doc("2.00"))
        assert other == render({"id": "inv_1", "total": "2.00"})
        assert (staging.stats.hits, staging.stats.misses) == (0, 1)
    finally:
        await demo.aclose()
        await staging.aclose()
