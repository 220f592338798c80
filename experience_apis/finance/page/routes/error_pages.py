"""Errors as pages: an absent or expired session goes to the sign-in form; anything else
is shown with the status, title and detail the gateway gives the same error everywhere
(its exception handlers decide them)."""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Request, Response
from litestar.response import Redirect

from experience_apis.finance.page import session
from experience_apis.finance.page.routes.rendering import here, refused

__all__ = ["page_error"]


def page_error(request: Request, exc: Exception) -> Response:
    if getattr(exc, "code", None) == "invalid_token":
        target = session.SIGN_IN_PATH
        if request.method == "GET":
            target += "?" + urlencode({"next": session.safe_next(here(request))})
        response = Redirect(target, status_code=303)
        response.delete_cookie(session.SESSION_COOKIE, path=session.SESSION_PATH)
        return response
    answer = _gateway_answer(request, exc)
    problem = answer.content
    shown = refused(answer.status_code, problem.title, problem.detail, problem.code)
    retry_after = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after")
    if retry_after is not None:
        shown.headers["Retry-After"] = retry_after
    return shown


def _gateway_answer(request: Request, exc: Exception) -> Response:
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls](request, exc)
    raise exc  # pragma: no cover (the gateway handles Exception itself)
