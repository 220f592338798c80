"""The Experience API view cache on its own: ETags and If-None-Match, keys, and the
in-process tier (hits, size bound, TTL, uncacheable keys)."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import msgspec
import pytest

from experience_apis.caching import CachedView, ViewCache, cache_key, render
from experience_apis.caching import stores as stores_module


class Doc(msgspec.Struct):
    id: str
    total: Decimal
    day: date


DOC = Doc("inv_1", Decimal("58.53"), date(2026, 1, 31))


def test_a_view_is_its_json_body_with_a_strong_etag_of_those_bytes():
    view = render(DOC)
    assert view.body == b'{"id":"inv_1","total":"58.53","day":"2026-01-31"}'
    assert view.etag.startswith('"') and view.etag.endswith('"') and len(view.etag) == 34
    assert render(Doc("inv_1", Decimal("58.53"), date(2026, 1, 31))).etag == view.etag
    assert render(Doc("inv_1", Decimal("58.54"), date(2026, 1, 31))).etag != view.etag


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ("{etag}", True),
        ("W/{etag}", True),  # If-None-Match compares weakly
        ('"other", {etag}', True),
        ('"other",W/{etag}', True),
        ("*", True),
        (' "other" ', False),
        ("{bare}", False),  # not a quoted entity tag
        ('"{bare}x"', False),
    ],
)
def test_if_none_match(header, matches):
    view = render(DOC)
    bare = view.etag.strip('"')
    if header is not None:
        header = header.format(etag=view.etag, bare=bare)
    assert view.not_modified(header) is matches


def test_keys_are_deterministic_and_depend_on_every_input():
    key = cache_key("portal.invoice", 7, "inv_1", DOC)
    assert key == cache_key("portal.invoice", 7, "inv_1", Doc("inv_1", Decimal("58.53"), DOC.day))
    assert key.startswith("portal.invoice:")
    assert (
        len(
            {
                key,
                cache_key("portal.invoice", 8, "inv_1", DOC),
                cache_key("portal.list", 7, "inv_1", DOC),
                cache_key("portal.invoice", 7, "inv_2", DOC),
                cache_key("portal.invoice", 7, "inv_1", Doc("inv_1", Decimal("1"), DOC.day)),
            }
        )
        == 5
    )


async def test_a_view_is_built_once_per_key_and_rebuilt_for_a_new_key():
    cache = ViewCache(max_bytes=1_000_000, ttl=60)
    builds = []

    async def build(total: str):
        builds.append(total)
        return Doc("inv_1", Decimal(total), DOC.day)

    first = await cache.view("k1", lambda: build("1.00"))
    again = await cache.view("k1", lambda: build("2.00"))
    assert again == first and builds == ["1.00"]
    changed = await cache.view("k2", lambda: build("2.00"))
    assert changed.etag != first.etag and builds == ["1.00", "2.00"]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.uncached) == (1, 2, 0)


async def test_a_view_of_unsettled_data_is_computed_and_not_kept():
    cache = ViewCache(max_bytes=1_000_000, ttl=60)
    calls, settled = 0, False

    async def build():
        nonlocal calls
        calls += 1
        return DOC

    async def is_settled():
        return settled

    await cache.view("k", build, settled=is_settled)
    await cache.view("k", build, settled=is_settled)
    assert calls == 2 and cache.stats.uncached == 2 and cache.stats.hits == 0
    settled = True
    await cache.view("k", build, settled=is_settled)
    settled = False  # once kept, a hit does not ask again: the view holds its stamps' data
    await cache.view("k", build, settled=is_settled)
    assert calls == 3 and (cache.stats.misses, cache.stats.hits) == (1, 1)


async def test_concurrent_misses_of_a_key_compute_it_once():
    cache = ViewCache(max_bytes=1_000_000, ttl=60)
    gate = asyncio.Event()
    calls = 0

    async def build():
        nonlocal calls
        calls += 1
        await gate.wait()
        return Doc("inv_1", Decimal(calls), DOC.day)

    waiting = [asyncio.create_task(cache.view("k", build)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    views = await asyncio.gather(*waiting)
    assert calls == 1 and {v.body for v in views} == {views[0].body}
    assert (cache.stats.misses, cache.stats.joined) == (1, 4)


async def test_a_failed_or_unkept_computation_is_not_shared():
    cache = ViewCache(max_bytes=1_000_000, ttl=60)
    gate = asyncio.Event()
    calls = 0

    async def build():
        nonlocal calls
        calls += 1
        first = calls == 1
        await gate.wait()
        if first:
            raise RuntimeError("the first computation fails")
        return DOC

    first = asyncio.create_task(cache.view("k", build))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.view("k", build))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(RuntimeError):
        await first
    assert (await second).body == render(DOC).body  # computed its own
    assert calls == 2 and cache.stats.joined == 0

    async def unsettled():
        return False

    gate.clear()
    calls = 1  # builds from here on succeed
    waiting = [asyncio.create_task(cache.view("u", build, settled=unsettled)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*waiting)
    assert calls == 4 and cache.stats.uncached == 3 and cache.stats.joined == 0


async def test_errors_are_not_cached():
    cache = ViewCache(max_bytes=1_000_000, ttl=60)

    async def failing():
        raise LookupError("gone")

    with pytest.raises(LookupError):
        await cache.view("k", failing)
    assert (await cache.view("k", lambda: _value(DOC))).body == render(DOC).body


async def _value(value):
    return value


async def test_the_memory_tier_is_bounded_by_bytes_and_by_age(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(stores_module, "_ENTRY_OVERHEAD", 0)
    cache = ViewCache(max_bytes=200, ttl=10, timer=lambda: clock[0])
    big = "x" * 120

    async def body(text: str):
        return {"text": text}

    await cache.view("a", lambda: body(big))
    await cache.view("b", lambda: body(big))  # together over 200 bytes: "a" is evicted
    await cache.view("a", lambda: body(big))
    assert cache.stats.misses == 3
    await cache.view("c", lambda: body("y" * 300))  # larger than the tier: served, not kept
    await cache.view("c", lambda: body("y" * 300))
    assert cache.stats.misses == 5
    await cache.view("a", lambda: body(big))
    assert cache.stats.hits == 1
    clock[0] += 11  # past the TTL
    await cache.view("a", lambda: body(big))
    assert cache.stats.misses == 6


async def test_a_cache_of_zero_bytes_keeps_nothing():
    cache = ViewCache(max_bytes=0, ttl=60)
    assert not cache.enabled
    await cache.view("k", lambda: _value(DOC))
    await cache.view("k", lambda: _value(DOC))
    assert (cache.stats.hits, cache.stats.misses) == (0, 2)
    assert isinstance(await cache.view("k", lambda: _value(DOC)), CachedView)


async def test_a_cache_without_a_tier_does_not_ask_whether_usage_is_settled():
    asked = 0

    async def settled() -> bool:
        nonlocal asked
        asked += 1
        return True

    cache = ViewCache(max_bytes=0, ttl=60)
    await cache.view("k", lambda: _value(DOC), settled=settled)
    assert asked == 0
    kept = ViewCache(max_bytes=1_000_000, ttl=60)
    await kept.view("k", lambda: _value(DOC), settled=settled)
    assert asked == 1
