"""Who may reach the page's routes, and which of its forms are accepted.

Every route but the sign-in form is reached only with the page's session cookie (the
gateway's authentication middleware reads it for routes whose ``opt`` names it, and for
no other route); looking needs ``finance:read``, acting ``finance:write`` and the
session's CSRF token (``experience_apis.finance.page.session``)."""

from __future__ import annotations

from litestar import Request
from litestar.response import Template

from canonical.access import requires
from experience_apis.finance.page import session
from experience_apis.finance.page.routes.rendering import refused

__all__ = ["ACT", "MAX_FORM_BYTES", "PUBLIC_FORM", "READ", "SESSION", "csrf_refusal"]

READ = requires("finance:read")
ACT = requires("finance:write")
# The authentication middleware takes these routes' token from this cookie, not from
# an Authorization header.
SESSION = {"session_cookie": session.SESSION_COOKIE}
PUBLIC_FORM = {"public": True}
MAX_FORM_BYTES = 16_384


def csrf_refusal(request: Request, form) -> Template | None:
    """Refuses a form that comes from another site or lacks this session's token."""
    token = request.cookies.get(session.SESSION_COOKIE, "")
    if session.cross_site(request.headers.get("sec-fetch-site")) or not session.csrf_valid(
        token, form.get("csrf_token")
    ):
        return refused(
            403,
            "Form refused",
            "This form does not carry the token of your session (it may come from another "
            "site, or from before you signed in again). Reload the page and try again.",
            "csrf_failed",
        )
    return None
