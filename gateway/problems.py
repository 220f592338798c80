"""The one edge where errors become HTTP: RFC 9457 problem+json for every non-2xx answer.

Each problem carries ``type`` (a stable URI per ``code``, listed in docs/problems.md),
``title``, ``status``, ``detail``, ``instance``, ``code`` and ``correlation_id``. Nothing
internal (no stack trace, no SQL) ever reaches the body.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from canonical import correlation, errors
from gateway.errors import GatewayError, InsufficientScope, RateLimited, Unauthenticated

__all__ = ["PROBLEM_BASE", "Problem", "exception_handlers", "problem_response"]

log = logging.getLogger("meterline.problems")

PROBLEM_BASE = "https://meterline.dev/problems/"
MEDIA_TYPE = "application/problem+json"

# Most specific first: the first class an error is an instance of decides the status.
STATUS_BY_ERROR: list[tuple[type[errors.MeterlineError], int]] = [
    (Unauthenticated, 401),
    (InsufficientScope, 403),
    (RateLimited, 429),
    (errors.NotFound, 404),
    (errors.Forbidden, 403),
    (errors.IdempotencyKeyRequired, 400),
    (errors.IdempotencyKeyReused, 422),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.InvalidRequest, 400),
    (errors.Conflict, 409),
    (errors.BusinessRuleViolation, 422),
    (errors.SystemThrottled, 503),
    (errors.Unavailable, 503),
    (errors.UpstreamError, 502),
]

HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Resource not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict with current state"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "Unprocessable request"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal error"),
    503: ("service_unavailable", "Service unavailable"),
}


class InvalidParam(msgspec.Struct, omit_defaults=True):
    name: str
    reason: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    correlation_id: str
    invalid_params: list[InvalidParam] | None = None
    retry_after: float | None = None


def problem_response(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    invalid_params: list[InvalidParam] | None = None,
) -> Response:
    problem = Problem(
        type=PROBLEM_BASE + code,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        correlation_id=correlation.ensure(),
        invalid_params=invalid_params or None,
    )
    return Response(content=problem, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _status_for(exc: errors.MeterlineError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def _domain(request: Request, exc: errors.MeterlineError) -> Response:
    status = _status_for(exc)
    headers = dict(exc.headers) if isinstance(exc, GatewayError) else None
    if isinstance(exc, errors.SystemThrottled | errors.Unavailable):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    if isinstance(exc, errors.Forbidden):
        # Like every 403 here, with the Bearer challenge (RFC 6750 §3.1): the token lacks
        # a privilege the operation needs (e.g. the partner claim).
        headers = {"WWW-Authenticate": 'Bearer realm="meterline", error="insufficient_scope"'}
    if status >= 500:
        log.warning("upstream failure %s: %s", exc.code, exc.detail)
    return problem_response(request, status, exc.code, exc.title, exc.detail, headers=headers)


def _invalid_params(extra: Any) -> list[InvalidParam]:
    params = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                params.append(
                    InvalidParam(
                        name=str(item.get("key") or item.get("source") or "body"),
                        reason=str(item.get("message", "invalid")),
                    )
                )
    return params


def _http(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    code, title = HTTP_CODES.get(status, (f"http_{status}", "HTTP error"))
    if isinstance(exc, ValidationException):
        code, title = "validation_failed", "Request validation failed"
    detail = exc.detail if exc.detail and exc.detail != title else title
    headers = dict(exc.headers or {})
    return problem_response(
        request,
        status,
        code,
        title,
        str(detail),
        headers=headers or None,
        invalid_params=_invalid_params(exc.extra),
    )


def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        "internal_error",
        "Internal error",
        "The request could not be completed; quote the correlation ID to support.",
    )


exception_handlers = {
    errors.MeterlineError: _domain,
    HTTPException: _http,
    Exception: _unexpected,
}
