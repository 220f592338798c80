"""What the page does when asked: retry or resolve an exception, reconcile the period.

Each action is a form post with the session's CSRF token, needs ``finance:write``, runs
once per rendered form (its ``action_key``, under the idempotency store: a double click
or a reloaded post replays instead of acting again) and leads back to the page with a
notice of what happened."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from litestar import Request, Response, post
from litestar.response import Redirect

from canonical import errors
from canonical.time import Period
from experience_apis.finance.page import session
from experience_apis.finance.page.routes.guards import ACT, MAX_FORM_BYTES, SESSION, csrf_refusal
from experience_apis.finance.page.routes.rendering import refused, with_query
from experience_apis.finance.service import FinanceService
from experience_apis.routing import Caller
from process_apis.idempotency import StoredResponse, fingerprint, run_idempotent
from process_apis.routing import Idempotency
from system_apis.routing import PERIOD_PATTERN

__all__ = ["reconcile", "resolve", "retry"]

ACTION = {**SESSION, "rate_limit": "write"}

Act = Callable[[], Awaitable[None]]


async def _act_once(
    request: Request,
    caller: Caller,
    idempotency: Idempotency,
    form,
    act: Act,
    *,
    done: str,
    exception_id: str = "",
) -> Response:
    """Run ``act`` once per form, then back to the page with the notice ``done`` (or
    the reason it was refused)."""
    back = session.safe_next(form.get("back"))
    key = str(form.get("action_key") or "")
    if not (key.isalnum() and len(key) <= 64):
        # Without its key a post could not be told from its replay: it acts nothing.
        return refused(
            400,
            "Form refused",
            "This form does not carry the key of a rendered form. Reload the page and try again.",
            "action_key_invalid",
        )

    async def produce() -> StoredResponse:
        await act()
        return StoredResponse(200, "text/plain", b"")

    body = await request.body()
    try:
        await run_idempotent(
            idempotency,
            caller.client_id,
            f"finance-page:{key}:{request.url.path}",
            fingerprint(request.method, request.url.path, "", body),
            produce,
        )
    except (errors.NotFound, errors.Conflict, errors.InvalidRequest) as exc:
        target = with_query(back, notice="refused", exception=exception_id, reason=exc.code)
        return Redirect(target + "#notice", status_code=303)
    target = with_query(back, notice=done, exception=exception_id)
    return Redirect(target + "#notice", status_code=303)


@post(
    "/exceptions/{exception_id:str}/retry",
    security=ACT,
    opt=ACTION,
    request_max_body_size=MAX_FORM_BYTES,
)
async def retry(
    request: Request,
    exception_id: str,
    finance: FinanceService,
    caller: Caller,
    idempotency: Idempotency,
) -> Response:
    form = await request.form()
    if (refusal := csrf_refusal(request, form)) is not None:
        return refusal

    async def act() -> None:
        await finance.retry(exception_id)

    return await _act_once(
        request, caller, idempotency, form, act, done="retried", exception_id=exception_id
    )


@post(
    "/exceptions/{exception_id:str}/resolve",
    security=ACT,
    opt=ACTION,
    request_max_body_size=MAX_FORM_BYTES,
)
async def resolve(
    request: Request,
    exception_id: str,
    finance: FinanceService,
    caller: Caller,
    idempotency: Idempotency,
) -> Response:
    form = await request.form()
    if (refusal := csrf_refusal(request, form)) is not None:
        return refusal

    async def act() -> None:
        note = str(form.get("note") or "").strip()
        if not 1 <= len(note) <= 1000:
            raise errors.InvalidRequest("a resolution needs a note (1-1000 characters)")
        await finance.resolve(exception_id, by=caller.client_id, note=note)

    return await _act_once(
        request, caller, idempotency, form, act, done="resolved", exception_id=exception_id
    )


@post("/reconcile", security=ACT, opt=ACTION, request_max_body_size=MAX_FORM_BYTES)
async def reconcile(
    request: Request, finance: FinanceService, caller: Caller, idempotency: Idempotency
) -> Response:
    """Reconcile the form's period now: the only way the page reconciles (looking at it
    shows the latest reconciliation and makes none)."""
    form = await request.form()
    if (refusal := csrf_refusal(request, form)) is not None:
        return refusal
    text = str(form.get("period") or "")
    if not re.fullmatch(PERIOD_PATTERN, text):
        return refused(
            400, "Form refused", "The period to reconcile is not a YYYY-MM.", "invalid_request"
        )
    period = Period.parse(text)

    async def act() -> None:
        await finance.reconcile(period)

    return await _act_once(request, caller, idempotency, form, act, done="reconciled")
