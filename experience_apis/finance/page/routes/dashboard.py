"""The page itself (``GET /finance``): a period at a glance with its latest
reconciliation, the exceptions to work, the ERP backlog, and the notice of the action
just done. Looking at it changes nothing (it reconciles nothing: "Reconcile now" does)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Template

from canonical.time import Period, utcnow
from experience_apis.finance.page import session
from experience_apis.finance.page.dashboard import dashboard
from experience_apis.finance.page.formatting import refusal
from experience_apis.finance.page.routes.guards import READ, SESSION
from experience_apis.finance.page.routes.rendering import here, page, with_query
from experience_apis.finance.service import FinanceService
from experience_apis.routing import Caller
from system_apis.routing import PERIOD_PATTERN, StartingAfter

__all__ = ["finance_page"]

PeriodQuery = Annotated[
    str | None,
    Parameter(pattern=PERIOD_PATTERN, required=False),
]
StatusQuery = Annotated[str, Parameter(pattern=r"^(open|resolved)?$", required=False)]
KindQuery = Annotated[str, Parameter(pattern=r"^[a-z0-9_]{0,64}$", required=False)]
NoticeQuery = Annotated[
    str, Parameter(pattern=r"^(retried|resolved|reconciled|refused)?$", required=False)
]
IdQuery = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_.:-]{0,128}$", required=False)]
CodeQuery = Annotated[str, Parameter(pattern=r"^[a-z_]{0,64}$", required=False)]


@get("/", security=READ, opt=SESSION, name="finance_page")
async def finance_page(
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
        # A refused action's notice says why; the exception is not shown as handled.
        highlighted=exception if exception and notice != "refused" else None,
    )
    last = context["exceptions"].data[-1].id if context["exceptions"].data else ""
    context.update(
        client_id=caller.client_id,
        can_act="finance:write" in caller.scopes,
        csrf=session.csrf_token(request.cookies.get(session.SESSION_COOKIE, "")),
        action_key=uuid.uuid4().hex,
        back=with_query(here(request)),
        next_exceptions=with_query(here(request), starting_after=last),
        notice=notice,
        notice_error=refusal(reason, exception) if notice == "refused" else "",
    )
    return page("dashboard.html", context)
