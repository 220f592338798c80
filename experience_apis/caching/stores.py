"""Where rendered views are kept: a bounded in-process LRU with a TTL, in front of Redis
(shared by every gateway process) when one is configured.

Keys carry the version stamps of the data a view is made of (``cache_key``), so an entry
never goes stale: changed data means another key, and old entries simply age out. That
is also why the two tiers need no coherence protocol: whatever either tier holds under
a key is right for that key. Redis failing costs speed, never answers: a Redis error is
a miss (logged once per outage), and the view is computed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from cachetools import TTLCache

from experience_apis.caching.views import CachedView, render

__all__ = ["CacheStats", "RedisTier", "ViewCache"]

log = logging.getLogger("meterline.experience.cache")

# Per entry, beyond its body: the key, the ETag and the bookkeeping.
_ENTRY_OVERHEAD = 300
# Seconds a Redis tier that failed is left alone before it is tried again.
REDIS_RETRY_SECONDS = 5.0


class CacheStats(msgspec.Struct):
    """Counters since start: views served from a tier, computed, computed without being
    kept (the data was in flux), and answered by another request's computation of the
    same view in this process."""

    hits: int = 0
    misses: int = 0
    uncached: int = 0
    joined: int = 0


class RedisTier:
    """Views in Redis under ``<prefix>:view:<namespace>:<key>`` for ``ttl`` seconds. The
    namespace names the database and code the views come from (``view_namespace``), so
    deployments sharing one Redis never answer each other's views."""

    def __init__(
        self, url: str, *, prefix: str, ttl: float, namespace: str = "", timeout: float = 0.25
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Short timeouts and no retries: a slow or absent Redis must not slow reads down.
        self._client = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._prefix = f"{prefix}:view:{namespace}:" if namespace else f"{prefix}:view:"
        self._ttl = max(1, int(ttl))
        self._down_until = 0.0
        self._down = False  # logged once when an outage starts, once when it ends

    def _failed(self, exc: Exception) -> None:
        if not self._down:
            log.warning("view cache: Redis unavailable, computing views (%s)", exc)
            self._down = True
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS

    def _answered(self) -> None:
        if self._down:
            log.warning("view cache: Redis available again")
            self._down = False

    async def get(self, key: str) -> CachedView | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            stored = await self._client.get(self._prefix + key)
        except Exception as exc:  # any Redis failure is a miss
            self._failed(exc)
            return None
        self._answered()
        if stored is None:
            return None
        etag, _, body = stored.partition(b"\n")
        return CachedView(body, etag.decode())

    async def put(self, key: str, view: CachedView) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            await self._client.set(
                self._prefix + key, view.etag.encode() + b"\n" + view.body, ex=self._ttl
            )
        except Exception as exc:
            self._failed(exc)
            return
        self._answered()

    async def aclose(self) -> None:
        await self._client.aclose()


class ViewCache:
    """Rendered views by key: ``view(key, build)`` answers the kept view, or builds,
    renders and keeps it.

    ``max_bytes`` bounds the in-process tier (0: none); ``ttl`` is how long an entry is
    kept in either tier (a key never goes stale, so the TTL only bounds memory);
    ``timer`` is the in-process tier's clock (tests move it)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl: float,
        redis: RedisTier | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory: TTLCache[str, CachedView] | None = (
            TTLCache(
                max_bytes,
                ttl,
                timer=timer,
                getsizeof=lambda v: len(v.body) + _ENTRY_OVERHEAD,
            )
            if max_bytes > 0
            else None
        )
        self._redis = redis
        # Views being computed, by key: a concurrent miss of one waits for it (below).
        self._building: dict[str, asyncio.Future[CachedView | None]] = {}
        self.stats = CacheStats()

    @classmethod
    def create(
        cls,
        *,
        max_bytes: int,
        ttl: float,
        redis_url: str | None = None,
        redis_prefix: str = "meterline",
        namespace: str = "",
    ) -> ViewCache:
        """In-process only, or with Redis behind it when ``redis_url`` is given (views
        under ``namespace`` there)."""
        redis = (
            RedisTier(redis_url, prefix=redis_prefix, ttl=ttl, namespace=namespace)
            if redis_url
            else None
        )
        return cls(max_bytes=max_bytes, ttl=ttl, redis=redis)

    @property
    def enabled(self) -> bool:
        return self._memory is not None or self._redis is not None

    async def view(
        self,
        key: str,
        build: Callable[[], Awaitable[Any]],
        *,
        settled: Callable[[], Awaitable[bool]] | None = None,
    ) -> CachedView:
        """The view kept under ``key``, else ``build()`` rendered and kept.

        ``settled``, when given, is asked on a miss of a cache with a tier, before
        building: whether the data under the key's stamps can no longer change
        (``DataVersions.usage_settled``); if not, the view is computed and not kept.
        Asked only on a miss, it costs a hit nothing.

        Concurrent misses of one key in this process compute it once: the others wait
        for that view (if it is kept; else, or if that computation fails, they compute
        their own)."""
        found = await self._get(key)
        if found is not None:
            self.stats.hits += 1
            return found
        pending = self._building.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                self.stats.joined += 1
                return shared
            return (await self._compute(key, build, settled))[0]
        pending = self._building[key] = asyncio.get_running_loop().create_future()
        shared = None
        try:
            view, kept = await self._compute(key, build, settled)
            if kept:
                shared = view
            return view
        finally:
            del self._building[key]
            pending.set_result(shared)

    async def _compute(
        self,
        key: str,
        build: Callable[[], Awaitable[Any]],
        settled: Callable[[], Awaitable[bool]] | None,
    ) -> tuple[CachedView, bool]:
        """``build()`` rendered, and whether it was kept under ``key``."""
        # With no tier nothing is kept anyway: whether it could be is not worth a query.
        if self.enabled and settled is not None and not await settled():
            self.stats.uncached += 1
            return render(await build()), False
        self.stats.misses += 1
        view = render(await build())
        await self._put(key, view)
        return view, True

    async def _get(self, key: str) -> CachedView | None:
        if self._memory is not None:
            found = self._memory.get(key)
            if found is not None:
                return found
        if self._redis is not None:
            found = await self._redis.get(key)
            if found is not None:
                self._remember(key, found)
                return found
        return None

    async def _put(self, key: str, view: CachedView) -> None:
        self._remember(key, view)
        if self._redis is not None:
            await self._redis.put(key, view)

    def _remember(self, key: str, view: CachedView) -> None:
        if self._memory is None:
            return
        with contextlib.suppress(ValueError):  # larger than the whole tier: not kept
            self._memory[key] = view

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
