"""The finance operations page (``/finance``): HTML for people, over the same finance
service the Experience API answers from.

Its routes, by what they do: ``dashboard`` (the page), ``sign_in`` (signing in and out),
``actions`` (retry, resolve, reconcile); ``guards`` says who reaches them and which
forms are accepted, ``rendering`` how they answer, ``error_pages`` how errors are shown. The
routes are not part of any API contract (``include_in_schema=False``) but declare their
scopes like every route."""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException

from canonical import errors
from experience_apis.finance.page import session
from experience_apis.finance.page.routes.actions import reconcile, resolve, retry
from experience_apis.finance.page.routes.dashboard import finance_page
from experience_apis.finance.page.routes.error_pages import page_error
from experience_apis.finance.page.routes.rendering import template_config
from experience_apis.finance.page.routes.sign_in import sign_in, sign_in_form, sign_out

__all__ = ["router", "template_config"]

router = Router(
    path=session.SESSION_PATH,
    route_handlers=[
        finance_page,
        sign_in_form,
        sign_in,
        sign_out,
        retry,
        resolve,
        reconcile,
    ],
    include_in_schema=False,
    # Every kind the gateway maps (more specific ones would otherwise win over Exception).
    exception_handlers={
        errors.MeterlineError: page_error,
        HTTPException: page_error,
        Exception: page_error,
    },
)
