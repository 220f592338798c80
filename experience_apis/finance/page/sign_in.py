"""Signing in to the page: a finance client's credentials exchanged for an access token
at the gateway's own token issuer, with the very checks ``POST /oauth/token`` makes
(client secret, active client, client credentials grant, allowed scopes).

The token asks for the page's scopes only, never the client's others: the session
cookie can then open nothing but finance. It is granted those of them the client holds
(``finance:write`` only if it does), in one secret check; without ``finance:read`` the
client may not use the page."""

from __future__ import annotations

from typing import Any

import msgspec

from experience_apis.finance.page.session import PAGE_SCOPES

__all__ = ["SignIn", "exchange"]

MAX_CLIENT_ID = 128
MAX_SECRET = 512


class SignIn(msgspec.Struct, frozen=True, kw_only=True):
    """A token and its lifetime, or why there is none (``message``, HTTP ``status``)."""

    token: str | None = None
    expires_in: int = 0
    status: int = 200
    message: str = ""


_REFUSED = SignIn(status=401, message="The client ID or secret is not right.")


async def _grant(issuer: Any, client_id: str, secret: str, scope: str):
    """A token of those of ``scope`` the client holds (one secret check)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": scope,
    }
    # No Authorization header: the credentials travel as client_secret_post.
    return await issuer.token({}, form, narrow_scope=True)


async def exchange(issuer: Any, client_id: str, secret: str) -> SignIn:
    """Exchange the credentials through ``issuer`` (the gateway's ``TokenIssuer``)."""
    if issuer is None:
        return SignIn(
            status=400,
            message="This gateway accepts tokens of an external authorization server and "
            "issues none itself, so the finance page cannot sign you in here.",
        )
    if not client_id or not secret or len(client_id) > MAX_CLIENT_ID or len(secret) > MAX_SECRET:
        return _REFUSED
    # A read-only finance client is granted finance:read alone.
    answer = await _grant(issuer, client_id, secret, " ".join(PAGE_SCOPES))
    granted = answer.body.get("scope", "").split() if answer.status == 200 else []
    if PAGE_SCOPES[0] in granted:
        return SignIn(token=answer.body["access_token"], expires_in=int(answer.body["expires_in"]))
    error = answer.body.get("error")
    if answer.status == 200 or error == "invalid_scope":
        return SignIn(
            status=403,
            message="This client may not use the finance page: it does not hold the "
            "finance:read scope.",
        )
    if error == "unauthorized_client":
        return SignIn(status=403, message="This client is disabled.")
    if error == "invalid_client":
        return _REFUSED
    return SignIn(status=400, message="The sign-in was refused; please try again.")
