"""Caching and conditional GETs for the Experience APIs (the portal's views use them).

    key = cache_key("portal.invoice", versions.documents, invoice_id, customer)
    view = await cache.view(key, build)      # CachedView: JSON body + strong ETag
    return conditional(view, if_none_match)  # (routes) 304, or 200 with the body

A view is cached under a key made of everything it is computed from: its parameters,
the version stamps of the data (``process_apis.versions``, read before the data) and
the master data it uses. Changed data makes a new key, so no entry is ever invalidated
and none is ever stale, in any process; entries age out by TTL and size. A view whose
data may still change under its stamps (usage in flux: ``settled``) is computed without
being kept. See docs/adr/0014.

``ViewCache`` keeps views in process memory, with Redis behind when configured;
``routes`` holds the HTTP side (only routes modules import the web framework)."""

from experience_apis.caching.stores import CacheStats, RedisTier, ViewCache
from experience_apis.caching.views import CachedView, cache_key, render

__all__ = ["CacheStats", "CachedView", "RedisTier", "ViewCache", "cache_key", "render"]
