"""Who is calling: the authenticated OAuth client as every layer may see it.

The gateway builds it from a verified access token; experience services use
``partner_id`` to keep a partner inside its own tenant."""

from __future__ import annotations

import msgspec

__all__ = ["PARTNER_SCOPES", "SCOPES", "SECURITY_SCHEME", "Caller", "requires"]

# Every scope the gateway knows, with what it grants (published in the contracts and the
# authorization server metadata).
SCOPES: dict[str, str] = {
    "usage:write": "Send usage events",
    "billing:run": "Start billing runs",
    "billing:read": "Read billing runs, invoices and exceptions",
    "finance:read": "Read finance views",
    "finance:write": "Act on finance views (resolve, retry)",
    "portal:read": "Read customer portal views",
    "partner:read": "Read a partner's customers",
    "system:read": "Read (and query) the wrapped systems",
    "system:write": "Change master data in the wrapped systems",
}
# The only scopes a partner client may hold: every route behind them filters by tenant.
PARTNER_SCOPES = frozenset({"portal:read", "partner:read"})

# Name of the OAuth 2.0 security scheme every contract declares.
SECURITY_SCHEME = "oauth2"


def requires(*scopes: str) -> list[dict[str, list[str]]]:
    """An OpenAPI security requirement: a token holding all of ``scopes``."""
    unknown = set(scopes) - SCOPES.keys()
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}")
    return [{SECURITY_SCHEME: list(scopes)}]


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    subject: str
    scopes: frozenset[str]
    # Set for partner clients: they may only ever see customers of this partner.
    partner_id: str | None = None
    token_id: str = ""
    # Unix time the token stops being valid (verified tokens are cached until then).
    expires_at: int = 0

    def has_scopes(self, required: frozenset[str] | set[str]) -> bool:
        return set(required) <= self.scopes
