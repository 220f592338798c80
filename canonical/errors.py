"""The error tree every layer raises; the gateway alone turns it into HTTP problems.

MeterlineError                    base: a stable ``code`` and a human ``detail``
├── NotFound                      the resource does not exist (or is not yours)
├── Forbidden                     the caller is known but not entitled to this operation
├── InvalidRequest                input that cannot be processed as given
│   ├── IdempotencyKeyRequired    a required Idempotency-Key header is missing
│   ├── IdempotencyKeyReused      same key, different request fingerprint
│   ├── PayloadTooLarge           more events or bytes than the stated limits
│   └── UnsupportedMediaType      a body in a format the endpoint does not take
├── Conflict                      the request clashes with current state
│   ├── IdempotencyInFlight       the first request with this key is still running
│   └── InvalidTransition         a document cannot move to the requested state
├── BusinessRuleViolation         valid input a finance rule refuses (closed period, ...)
├── Unavailable                   Meterline cannot take the request now (store or stream
│                                 down, shutting down); ``retry_after`` seconds
└── UpstreamError                 a wrapped system failed; ``transient`` says if a retry may help
    ├── SystemUnavailable         503 / maintenance / timeout
    ├── SystemThrottled           the system's own quota (``retry_after`` seconds)
    └── AmbiguousCommit           the call may have committed but the answer was lost
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousCommit",
    "BusinessRuleViolation",
    "Conflict",
    "Forbidden",
    "IdempotencyInFlight",
    "IdempotencyKeyRequired",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "InvalidTransition",
    "MeterlineError",
    "NotFound",
    "PayloadTooLarge",
    "SystemThrottled",
    "SystemUnavailable",
    "Unavailable",
    "UnsupportedMediaType",
    "UpstreamError",
]


class MeterlineError(Exception):
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str = "", *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code:
            self.code = code
        self.extra = extra


class NotFound(MeterlineError):
    code = "not_found"
    title = "Resource not found"


class Forbidden(MeterlineError):
    code = "forbidden"
    title = "Forbidden"


class InvalidRequest(MeterlineError):
    code = "invalid_request"
    title = "Invalid request"


class IdempotencyKeyRequired(InvalidRequest):
    code = "idempotency_key_required"
    title = "Idempotency-Key header required"


class IdempotencyKeyReused(InvalidRequest):
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with a different request"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"
    title = "Unsupported media type"


class Conflict(MeterlineError):
    code = "conflict"
    title = "Conflict with current state"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    title = "A request with this Idempotency-Key is still in progress"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Invalid state transition"


class BusinessRuleViolation(MeterlineError):
    code = "business_rule_violation"
    title = "Business rule violation"


class Unavailable(MeterlineError):
    code = "unavailable"
    title = "Temporarily unavailable"

    def __init__(self, detail: str = "", *, retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class UpstreamError(MeterlineError):
    code = "upstream_error"
    title = "Wrapped system error"
    transient = False

    def __init__(self, detail: str = "", *, system: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.system = system


class SystemUnavailable(UpstreamError):
    code = "system_unavailable"
    title = "Wrapped system unavailable"
    transient = True

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        # Seconds the system said it stays down (a 503's Retry-After, a maintenance
        # window's end); None when it did not say.
        self.retry_after = retry_after


class SystemThrottled(UpstreamError):
    code = "system_throttled"
    title = "Wrapped system quota exceeded"
    transient = True

    def __init__(self, detail: str = "", *, retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class AmbiguousCommit(UpstreamError):
    code = "ambiguous_commit"
    title = "Outcome of a call to a wrapped system is unknown"
    transient = True
