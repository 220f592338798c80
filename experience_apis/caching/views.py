"""A rendered view (its JSON body and strong ETag), the keys views are cached under, and
the ``If-None-Match`` comparison."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

__all__ = ["CachedView", "cache_key", "render"]

_ENCODER = msgspec.json.Encoder()
# An entity tag of an If-None-Match list: its opaque part, weak or not (RFC 9110 §8.8.3).
_TAG = re.compile(r'(?:W/)?"([^"]*)"')


class CachedView(msgspec.Struct, frozen=True):
    """A view as sent: the JSON body and its strong ETag, a hash of exactly these bytes
    (so any two processes rendering the same data agree on it)."""

    body: bytes
    etag: str

    def not_modified(self, if_none_match: str | None) -> bool:
        """Whether a conditional GET's ``If-None-Match`` names this representation
        (weak comparison, as RFC 9110 §13.1.2 prescribes; ``*`` names any)."""
        if not if_none_match:
            return False
        if if_none_match.strip() == "*":
            return True
        opaque = self.etag.strip('"')
        return any(tag == opaque for tag in _TAG.findall(if_none_match))


def render(value: Any) -> CachedView:
    """A view of ``value`` (a msgspec Struct, as the routes would encode it)."""
    body = _ENCODER.encode(value)
    return CachedView(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def cache_key(view: str, *inputs: Any) -> str:
    """The key of a view computed from ``inputs``: everything its content depends on
    (parameters, version stamps, master data), encodable by msgspec. Equal inputs give
    equal keys in every process."""
    digest = hashlib.sha256(_ENCODER.encode([view, *inputs])).hexdigest()
    return f"{view}:{digest}"
