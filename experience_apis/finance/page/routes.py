"""The finance operations page (``/finance``): HTML for people, over the same finance
service the Experience API answers from.

Every route but the sign-in form is reached only with the page's session cookie (the
gateway's authentication middleware reads it for routes whose ``opt`` names it, and for
no other route); a missing or expired session leads to the sign-in form. Actions need
``finance:write`` and the session's CSRF token. The routes are not part of any API
contract (``include_in_schema=False``) but declare their scopes like every route."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import StrictUndefined
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.params import Dependency, Parameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from canonical import correlation, errors
from canonical.access import requires
from canonical.time import Period, utcnow
from experience_apis.finance.page import session
from experience_apis.finance.page.assets import CSP, SCRIPT, STYLE, TEMPLATES
from experience_apis.finance.page.dashboard import dashboard
from experience_apis.finance.page.formatting import age, amount, refusal
from experience_apis.finance.page.sign_in import exchange
from experience_apis.finance.service import FinanceService
from experience_apis.routing import Caller
from process_apis.idempotency import StoredResponse, fingerprint, run_idempotent
from process_apis.routing import Idempotency
from system_apis.routing import PERIOD_PATTERN, StartingAfter

__all__ = ["router", "template_config"]

READ = requires("finance:read")
ACT = requires("finance:write")
# The authentication middleware takes these routes' token from this cookie, not from
# an Authorization header.
SESSION = {"session_cookie": session.SESSION_COOKIE}
PUBLIC_FORM = {"public": True}
# Pages hold finance data: never cached, never framed, only their own inline assets.
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP}
SIGN_IN_SECONDS = 1800
MAX_FORM_BYTES = 16_384

PeriodQuery = Annotated[
    str | None,
    Parameter(pattern=PERIOD_PATTERN, required=False),
]
StatusQuery = Annotated[str, Parameter(pattern=r"^(open|resolved)?$", required=False)]
KindQuery = Annotated[str, Parameter(pattern=r"^[a-z0-9_]{0,64}$", required=False)]
NoticeQuery = Annotated[str, Parameter(pattern=r"^(retried|resolved|refused)?$", required=False)]
IdQuery = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_.:-]{0,128}$", required=False)]
CodeQuery = Annotated[str, Parameter(pattern=r"^[a-z_]{0,64}$", required=False)]
NextQuery = Annotated[str, Parameter(query="next", max_length=512, required=False)]


class PageSettings(Protocol):
    finance_page_secure_cookie: bool | None


Settings = Annotated[PageSettings, Dependency(skip_validation=True)]
TokenIssuer = Annotated[Any, Dependency(skip_validation=True)]


def _page(name: str, context: dict[str, Any], status: int = 200, **kwargs) -> Template:
    return Template(name, context=context, status_code=status, headers=PAGE_HEADERS, **kwargs)


def _secure(settings: PageSettings, request: Request) -> bool:
    return session.cookie_secure(settings.finance_page_secure_cookie, request.url.scheme)


def _with_query(path: str, **params: str) -> str:
    parts = urlsplit(path)
    query = dict(parse_qsl(parts.query))
    for name in ("notice", "exception", "reason"):
        query.pop(name, None)
    query.update({k: v for k, v in params.items() if v})
    return parts.path + ("?" + urlencode(query) if query else "")


def _refused(status: int, title: str, detail: str, code: str) -> Template:
    context = {
        "title": title,
        "detail": detail,
        "status": status,
        "code": code,
        "correlation_id": correlation.current(),
    }
    return _page("error.html", context, status)


def _csrf_refusal(request: Request, form) -> Template | None:
    """Refuses a form that comes from another site or lacks this session's token."""
    token = request.cookies.get(session.SESSION_COOKIE, "")
    if session.cross_site(request.headers.get("sec-fetch-site")) or not session.csrf_valid(
        token, form.get("csrf_token")
    ):
        return _refused(
            403,
            "Form refused",
            "This form does not carry the token of your session (it may come from another "
            "site, or from before you signed in again). Reload the page and try again.",
            "csrf_failed",
        )
    return None


@get("/", security=READ, opt=SESSION, name="finance_page")
async def page(
    request: Request,
    finance: FinanceService,
    caller: Caller,
    period: PeriodQuery = None,
    status: StatusQuery = "open",
    kind: KindQuery = "",
    starting_after: StartingAfter = None,
    notice: NoticeQuery = "",
    exception: IdQuery = "",
    reason: CodeQuery = "",
) -> Template:
    shown = Period.parse(period) if period else Period.containing(utcnow())
    context = await dashboard(
        finance,
        shown,
        status=status or None,
        kind=kind or None,
        starting_after=starting_after,
        highlighted=exception or None,
    )
    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    last = context["exceptions"].data[-1].id if context["exceptions"].data else ""
    context.update(
        client_id=caller.client_id,
        can_act="finance:write" in caller.scopes,
        csrf=session.csrf_token(request.cookies.get(session.SESSION_COOKIE, "")),
        action_key=uuid.uuid4().hex,
        back=_with_query(here),
        next_exceptions=_with_query(here, starting_after=last),
        notice=notice,
        notice_error=refusal(reason, exception) if notice == "refused" else "",
    )
    if notice == "refused":
        context["handled"] = None
    return _page("dashboard.html", context)


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
        "client_id": client_id,
    }
    return _page(
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
    client_id = str(form.get("client_id") or "").strip()[:128]
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
    refused = _csrf_refusal(request, await request.form())
    if refused is not None:
        return refused
    response = Redirect(session.SIGN_IN_PATH + "?signed_out=1", status_code=303)
    response.delete_cookie(session.SESSION_COOKIE, path=session.SESSION_PATH)
    return response


async def _act(request: Request, caller, idempotency, exception_id: str, done: str, act):
    """Run an action once per form (its ``action_key``), then back to the page."""
    form = await request.form()
    refused = _csrf_refusal(request, form)
    if refused is not None:
        return refused
    back = session.safe_next(form.get("back"))
    key = str(form.get("action_key") or "")
    try:
        if key.isalnum() and len(key) <= 64:

            async def produce() -> StoredResponse:
                await act(form)
                return StoredResponse(200, "text/plain", b"")

            body = await request.body()
            await run_idempotent(
                idempotency,
                caller.client_id,
                f"finance-page:{key}:{request.url.path}",
                fingerprint(request.method, request.url.path, "", body),
                produce,
            )
        else:
            await act(form)
    except (errors.NotFound, errors.Conflict, errors.InvalidRequest) as exc:
        target = _with_query(back, notice="refused", exception=exception_id, reason=exc.code)
        return Redirect(target + "#notice", status_code=303)
    target = _with_query(back, notice=done, exception=exception_id)
    return Redirect(target + "#notice", status_code=303)


@post(
    "/exceptions/{exception_id:str}/retry",
    security=ACT,
    opt={**SESSION, "rate_limit": "write"},
    request_max_body_size=MAX_FORM_BYTES,
)
async def retry(
    request: Request,
    exception_id: str,
    finance: FinanceService,
    caller: Caller,
    idempotency: Idempotency,
) -> Response:
    async def act(form) -> None:
        await finance.retry(exception_id)

    return await _act(request, caller, idempotency, exception_id, "retried", act)


@post(
    "/exceptions/{exception_id:str}/resolve",
    security=ACT,
    opt={**SESSION, "rate_limit": "write"},
    request_max_body_size=MAX_FORM_BYTES,
)
async def resolve(
    request: Request,
    exception_id: str,
    finance: FinanceService,
    caller: Caller,
    idempotency: Idempotency,
) -> Response:
    async def act(form) -> None:
        note = str(form.get("note") or "").strip()
        if not 1 <= len(note) <= 1000:
            raise errors.InvalidRequest("a resolution needs a note (1-1000 characters)")
        await finance.resolve(exception_id, by=caller.client_id, note=note)

    return await _act(request, caller, idempotency, exception_id, "resolved", act)


def _page_error(request: Request, exc: Exception) -> Response:
    """Errors as pages: an absent or expired session goes to the sign-in form; anything
    else is shown with the status, title and detail the gateway gives the same error
    everywhere (its exception handlers decide them)."""
    if getattr(exc, "code", None) == "invalid_token":
        target = session.SIGN_IN_PATH
        if request.method == "GET":
            here = request.url.path + ("?" + request.url.query if request.url.query else "")
            target += "?" + urlencode({"next": session.safe_next(here)})
        response = Redirect(target, status_code=303)
        response.delete_cookie(session.SESSION_COOKIE, path=session.SESSION_PATH)
        return response
    answer = _gateway_answer(request, exc)
    problem = answer.content
    page = _refused(answer.status_code, problem.title, problem.detail, problem.code)
    retry_after = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after")
    if retry_after is not None:
        page.headers["Retry-After"] = retry_after
    return page


def _gateway_answer(request: Request, exc: Exception) -> Response:
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls](request, exc)
    raise exc  # pragma: no cover (the gateway handles Exception itself)


def template_config() -> TemplateConfig:
    """The app's template engine: the page's templates, its inline assets and filters;
    autoescaped, and strict about undefined names (a typo fails, it does not blank)."""

    def configure(engine: JinjaTemplateEngine) -> None:
        engine.engine.undefined = StrictUndefined
        engine.engine.globals.update(style=STYLE, script=SCRIPT)
        engine.engine.filters.update(amount=amount, age=age)

    return TemplateConfig(
        directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=configure
    )


router = Router(
    path=session.SESSION_PATH,
    route_handlers=[page, sign_in_form, sign_in, sign_out, retry, resolve],
    include_in_schema=False,
    # Every kind the gateway maps (more specific ones would otherwise win over Exception).
    exception_handlers={
        errors.MeterlineError: _page_error,
        HTTPException: _page_error,
        Exception: _page_error,
    },
)
