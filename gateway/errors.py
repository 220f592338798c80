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

    def __init__(self, detail: str = "", *, realm: str = "meterline", scope: str = "") -> None:
        # RFC 6750 §3: a request without any credentials gets no error code; any other
        # failure is ``invalid_token``.
        params = [f'realm="{realm}"']
        if detail != "missing":
            params.append('error="invalid_token"')
            params.append(f'error_description="{_quoted(detail)}"')
        if scope:
            params.append(f'scope="{scope}"')
        super().__init__(
            "an access token is required (Authorization: Bearer <token>)"
            if detail == "missing"
            else f"the access token is not valid: {detail}",
            headers={"WWW-Authenticate": "Bearer " + ", ".join(params)},
        )


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
