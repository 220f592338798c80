"""Shared plumbing of the HTTP adapters: one httpx client per remote system that forwards
the correlation ID and turns the remote's problems into the canonical error tree."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from canonical import correlation, errors

__all__ = ["RemoteSystem"]


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
        try:
            response = await self._client.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
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
        return msgspec.json.decode(response.content, type=type)


def _as_error(system: str, response: httpx.Response) -> errors.MeterlineError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = f"{system}: {body.get('detail') or response.reason_phrase}"
    code = body.get("code")
    status = response.status_code
    if status == 404:
        return errors.NotFound(detail, code=code)
    if status == 409:
        return errors.Conflict(detail, code=code)
    if status == 422:
        return errors.BusinessRuleViolation(detail, code=code)
    if status == 429:
        retry_after = float(response.headers.get("retry-after", "1") or 1)
        return errors.SystemThrottled(detail, retry_after=retry_after, system=system)
    if status in (502, 503, 504):
        return errors.SystemUnavailable(detail, system=system)
    if 400 <= status < 500:
        return errors.InvalidRequest(detail, code=code)
    return errors.UpstreamError(detail, system=system)
