"""The page's session and its protection against cross-site requests.

- The session is the access token the gateway's own token endpoint issued to the finance
  client that signed in, kept in an HttpOnly, SameSite=Strict cookie scoped to
  ``/finance`` (so it never even travels to the APIs, which take Bearer tokens only). It
  lives as long as the token.
- Every state-changing form carries a CSRF token derived from the session: an HMAC of a
  fixed label keyed by the session's access token. Only the browser holding the cookie
  (HttpOnly: not even the page's own scripts) and the gateway know that key, so no other
  site can forge the token, and it stops working with the session. Nothing is stored.
- The sign-in form, before any session exists, is a double submit: a random nonce in a
  cookie of its own and in the form, which must match (login CSRF).
- A request a browser marks as coming from another site (``Sec-Fetch-Site``) is refused
  outright, before any token is looked at."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "PAGE_SCOPES",
    "SESSION_COOKIE",
    "SESSION_PATH",
    "SIGN_IN_COOKIE",
    "SIGN_IN_PATH",
    "cookie_secure",
    "cross_site",
    "csrf_token",
    "csrf_valid",
    "new_nonce",
    "nonce_valid",
    "safe_next",
]

SESSION_PATH = "/finance"
SIGN_IN_PATH = "/finance/sign-in"
SESSION_COOKIE = "meterline_finance_session"
SIGN_IN_COOKIE = "meterline_finance_sign_in"
# What a page session may hold: a token for the page is asked with no other scope.
PAGE_SCOPES = ("finance:read", "finance:write")

_CSRF_LABEL = b"meterline finance page: csrf v1"
# Browsers' own statement of where a request comes from (Fetch Metadata).
_SAME_ORIGIN = ("same-origin", "none")


def csrf_token(session_token: str) -> str:
    """The form token of the session holding ``session_token``."""
    digest = hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_valid(session_token: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), presented.encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def nonce_valid(cookie: str | None, presented: str | None) -> bool:
    """The sign-in form's nonce is the one its cookie holds."""
    if not cookie or not presented:
        return False
    return hmac.compare_digest(cookie.encode(), presented.encode())


def cross_site(sec_fetch_site: str | None) -> bool:
    """True when the browser says the request comes from another origin. Browsers that
    do not send the header are covered by the SameSite cookie and the CSRF token."""
    return sec_fetch_site is not None and sec_fetch_site.lower() not in _SAME_ORIGIN


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the page itself, nothing else (an open
    redirect would lend the sign-in page to phishing)."""
    if (
        value
        and value.startswith(SESSION_PATH)
        and value[len(SESSION_PATH) : len(SESSION_PATH) + 1] in ("", "/", "?")
        and "\\" not in value
        and not value.startswith(SIGN_IN_PATH)
        and all(0x20 < ord(c) < 0x7F for c in value)
    ):
        return value
    return SESSION_PATH


def cookie_secure(setting: bool | None, scheme: str) -> bool:
    """Secure cookies when set so, else when the page is served over https."""
    return setting if setting is not None else scheme == "https"
