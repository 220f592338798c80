"""Correlation IDs: accepted from ``X-Correlation-ID`` or a W3C ``traceparent``, else a
fresh UUIDv7; bound for the request, echoed on the response and put on every log line."""

from __future__ import annotations

import logging
import re

from canonical import correlation
from canonical.ids import new_uuid7

__all__ = ["CorrelationLogFilter", "CorrelationMiddleware", "pick_correlation_id"]

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def pick_correlation_id(headers: dict[str, str]) -> str:
    given = headers.get("x-correlation-id")
    if given is not None and correlation.VALID.match(given):
        return given
    parent = headers.get("traceparent")
    if parent:
        match = _TRACEPARENT.match(parent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return new_uuid7()


class CorrelationMiddleware:
    """Plain ASGI middleware, outermost, so even routing errors carry the ID."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        value = pick_correlation_id(headers)
        token = correlation.use(value)
        raw = value.encode()

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-correlation-id", raw),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation.reset(token)


class CorrelationLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation.current() or "-"
        return True
