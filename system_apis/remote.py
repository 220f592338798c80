"""Shared plumbing of the HTTP adapters: one httpx client per remote system that forwards
the correlation ID and turns the remote's problems into the canonical error tree."""

from __future__ import annotations

import math
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from canonical import correlation, errors
from canonical.time import as_utc, utcnow

__all__ = ["PAGE_SIZE", "RemoteSystem", "segment"]

PAGE_SIZE = 100  # the largest page every System API contract serves
# Methods whose call may change the remote's state (an unknown outcome is ambiguous).
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def segment(value: str) -> str:
    """``value`` escaped as one path segment."""
    return quote(value, safe="")


class RemoteSystem:
    """Calls ``base_url`` (e.g. ``https://erp.internal/system/erp/v1``) with JSON bodies.

    ``transport`` is injectable so tests can route calls to an in-process app."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        type: Any = Any,
    ) -> Any:
        headers = {"content-type": "application/json"}
        if corr := correlation.current():
            headers[correlation.HEADER] = corr
        content = msgspec.json.encode(json) if json is not None else None
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._client.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            if method.upper() in _WRITES:
                raise errors.AmbiguousCommit(
                    f"{self.name}: {method} {path} timed out", system=self.name
                ) from exc
            raise errors.SystemUnavailable(f"{self.name}: timed out", system=self.name) from exc
        except httpx.TransportError as exc:
            raise errors.SystemUnavailable(f"{self.name}: {exc}", system=self.name) from exc
        if response.status_code >= 400:
            raise _as_error(self.name, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return msgspec.json.decode(response.content, type=type)
        except (msgspec.DecodeError, RecursionError) as exc:
            # An answer outside the contract is the remote's failure, raised as one so that
            # callers' handling of ``UpstreamError`` (hold, retry) still applies; a write
            # it answered may have committed all the same.
            detail = f"{self.name}: {method} {path} answered outside the contract: {exc}"
            if method.upper() in _WRITES:
                raise errors.AmbiguousCommit(detail, system=self.name) from exc
            raise errors.UpstreamError(detail, system=self.name) from exc

    async def collect(
        self,
        path: str,
        page_type: Any,
        *,
        params: dict[str, Any] | None = None,
        key: Callable[[Any], str] = lambda item: item.id,
    ) -> list:
        """Every item of a cursor-paginated list: follows ``starting_after`` until
        ``has_more`` is false."""
        found: list = []
        after: str | None = None
        while True:
            page = await self.call(
                "GET",
                path,
                params={**(params or {}), "limit": PAGE_SIZE, "starting_after": after},
                type=page_type,
            )
            found += page.data
            if not page.has_more or not page.data:
                return found
            after = key(page.data[-1])


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC
    9110). Absent or unreadable means 1, so a throttle stays a (retryable) throttle."""
    if not value:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (as_utc(parsedate_to_datetime(value)) - utcnow()).total_seconds()
        except (TypeError, ValueError):
            return 1.0
        return max(seconds, 0.0)
    return seconds if math.isfinite(seconds) else 1.0


def _as_error(system: str, response: httpx.Response) -> errors.MeterlineError:
    """The canonical error for a remote's error answer; never raises itself, whatever the
    body holds, so callers' handling of ``UpstreamError`` (retries) is not bypassed."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        body = None
    if not isinstance(body, dict):  # a problem is a JSON object; anything else carries nothing
        body = {}
    detail = f"{system}: {body.get('detail') or response.reason_phrase}"
    code = body.get("code") if isinstance(body.get("code"), str) else None
    status = response.status_code
    if status == 404:
        return errors.NotFound(detail, code=code)
    if status == 409:
        return errors.Conflict(detail, code=code)
    if status == 422:
        return errors.BusinessRuleViolation(detail, code=code)
    if status == 429:
        retry_after = _retry_after(response.headers.get("retry-after"))
        return errors.SystemThrottled(detail, retry_after=retry_after, system=system)
    if status in (502, 503, 504):
        header = response.headers.get("retry-after")
        retry_after = _retry_after(header) if header else None
        return errors.SystemUnavailable(detail, retry_after=retry_after, system=system)
    if 400 <= status < 500:
        return errors.InvalidRequest(detail, code=code)
    return errors.UpstreamError(detail, system=system)
