"""The gateway's own errors, raised at the edge before any API layer runs.

GatewayError                      an edge refusal; ``headers`` go on the response as-is
├── Unauthenticated               no, or no valid, access token (401, ``WWW-Authenticate``)
├── InsufficientScope             a valid token without the route's scope (403)
└── RateLimited                   the caller's budget for this route class is spent (429)
"""

from __future__ import annotations

from canonical.errors import MeterlineError

__all__ = ["GatewayError", "InsufficientScope", "RateLimited", "Unauthenticated"]


class GatewayError(MeterlineError):
    code = "gateway_error"
    title = "Refused at the gateway"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None, **extra):
        super().__init__(detail, **extra)
        self.headers = dict(headers or {})


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "'")


class Unauthenticated(GatewayError):
    code = "invalid_token"
    title = "Authentication required"

    def __init__(self, reason: str | None = None, *, realm: str = "meterline") -> None:
        """``reason`` says what is wrong with the token; None means none was sent."""
        # RFC 6750 §3: a request without any credentials gets no error code; any other
        # failure is ``invalid_token``.
        challenge = f'Bearer realm="{realm}"'
        if reason is None:
            detail = "an access token is required (Authorization: Bearer <token>)"
        else:
            detail = f"the access token is not valid: {reason}"
            challenge += f', error="invalid_token", error_description="{_quoted(reason)}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InsufficientScope(GatewayError):
    code = "insufficient_scope"
    title = "Insufficient scope"

    def __init__(self, required: str, *, realm: str = "meterline") -> None:
        super().__init__(
            f"this operation requires the scope(s): {required}",
            headers={
                "WWW-Authenticate": f'Bearer realm="{realm}", error="insufficient_scope", '
                f'scope="{required}"'
            },
        )


class RateLimited(GatewayError):
    code = "rate_limited"
    title = "Too many requests"
