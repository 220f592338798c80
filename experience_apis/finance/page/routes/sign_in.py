"""Signing in and out of the page: the sign-in form (the one public page route), the
exchange of a finance client's credentials for the session cookie, and sign-out."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import Dependency, Parameter
from litestar.response import Redirect, Template

from experience_apis.finance.page import session
from experience_apis.finance.page.routes.guards import (
    MAX_FORM_BYTES,
    PUBLIC_FORM,
    READ,
    SESSION,
    csrf_refusal,
)
from experience_apis.finance.page.routes.rendering import page
from experience_apis.finance.page.sign_in import MAX_CLIENT_ID, exchange

__all__ = ["sign_in", "sign_in_form", "sign_out"]

SIGN_IN_SECONDS = 1800

NextQuery = Annotated[str, Parameter(query="next", max_length=512, required=False)]


class PageSettings(Protocol):
    finance_page_secure_cookie: bool | None


Settings = Annotated[PageSettings, Dependency(skip_validation=True)]
TokenIssuer = Annotated[Any, Dependency(skip_validation=True)]


def _secure(settings: PageSettings, request: Request) -> bool:
    return session.cookie_secure(settings.finance_page_secure_cookie, request.url.scheme)


@get("/sign-in", opt={**PUBLIC_FORM, "rate_limit": "read"})
async def sign_in_form(
    request: Request, settings: Settings, next_path: NextQuery = "", signed_out: str = ""
) -> Template:
    message = "You are signed out." if signed_out else ""
    return _sign_in_page(request, settings, session.safe_next(next_path), message, error=False)


def _sign_in_page(
    request: Request,
    settings: PageSettings,
    next_path: str,
    message: str,
    *,
    error: bool,
    status: int = 200,
    client_id: str = "",
) -> Template:
    nonce = session.new_nonce()
    context = {
        "nonce": nonce,
        "next": next_path,
        "message": message,
        "error": error,
        "client_id": client_id[:MAX_CLIENT_ID],  # echoed back, bounded
    }
    return page(
        "sign_in.html",
        context,
        status,
        cookies=[
            Cookie(
                key=session.SIGN_IN_COOKIE,
                value=nonce,
                path=session.SIGN_IN_PATH,
                max_age=SIGN_IN_SECONDS,
                httponly=True,
                samesite="strict",
                secure=_secure(settings, request),
            )
        ],
    )


@post(
    "/sign-in",
    opt={**PUBLIC_FORM, "rate_limit": "token"},
    request_max_body_size=MAX_FORM_BYTES,
    status_code=303,
)
async def sign_in(request: Request, settings: Settings, token_issuer: TokenIssuer) -> Response:
    form = await request.form()
    next_path = session.safe_next(form.get("next"))
    # Whole: a longer one is refused by ``exchange`` (only the form echoes it cut).
    client_id = str(form.get("client_id") or "").strip()
    if session.cross_site(request.headers.get("sec-fetch-site")) or not session.nonce_valid(
        request.cookies.get(session.SIGN_IN_COOKIE), form.get("nonce")
    ):
        message = "The sign-in form expired or came from elsewhere; please sign in again."
        return _sign_in_page(
            request, settings, next_path, message, error=True, status=403, client_id=client_id
        )
    outcome = await exchange(token_issuer, client_id, str(form.get("client_secret") or ""))
    if outcome.token is None:
        return _sign_in_page(
            request,
            settings,
            next_path,
            outcome.message,
            error=True,
            status=outcome.status,
            client_id=client_id,
        )
    # The token endpoint's per-client budget applies here too: whoever holds a finance
    # client's credentials mints no more tokens through the page than through the API.
    await request.app.state.rate_limits.check_client("token_client", client_id)
    response = Redirect(next_path, status_code=303)
    response.set_cookie(
        session.SESSION_COOKIE,
        outcome.token,
        path=session.SESSION_PATH,
        max_age=outcome.expires_in,
        httponly=True,
        samesite="strict",
        secure=_secure(settings, request),
    )
    response.delete_cookie(session.SIGN_IN_COOKIE, path=session.SIGN_IN_PATH)
    return response


@post("/sign-out", security=READ, opt=SESSION, request_max_body_size=MAX_FORM_BYTES)
async def sign_out(request: Request) -> Response:
    refused = csrf_refusal(request, await request.form())
    if refused is not None:
        return refused
    response = Redirect(session.SIGN_IN_PATH + "?signed_out=1", status_code=303)
    response.delete_cookie(session.SESSION_COOKIE, path=session.SESSION_PATH)
    return response
