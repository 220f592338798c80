"""Experience API for customer portals (``/experience/portal/v1``).

Every route is a conditional GET: the answer carries a strong ``ETag``, and a request
whose ``If-None-Match`` names the current one gets 304 with no body. A partner token
reads only its own customers; anything else answers the 404 of an unknown id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Response, Router, get
from litestar.params import Parameter

from canonical.access import requires
from canonical.time import Period
from experience_apis.caching.routes import CONDITIONAL, IfNoneMatch, conditional
from experience_apis.portal.service import PortalService
from experience_apis.portal.summary_views import PortalCustomerSummary
from experience_apis.portal.usage_views import PortalEstimate, PortalUsage
from experience_apis.portal.views import PortalEventList, PortalInvoice, PortalInvoiceList
from experience_apis.routing import Caller
from process_apis.invoices.queries import ISSUED
from system_apis.routing import PERIOD_PATTERN, Limit, RefusedByRule, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("portal:read")

StatusFilter = one_of(*ISSUED)
PeriodParam = Annotated[
    str | None,
    Parameter(
        required=False,
        pattern=PERIOD_PATTERN,
        description="Billing period, YYYY-MM.",
    ),
]
AsOf = Annotated[
    datetime | None,
    Parameter(
        required=False,
        description="Count only usage whose event time is before this instant (RFC 3339; "
        "not in the future). Default: every event stored for the open period.",
    ),
]
SeqCursor = Annotated[
    int | None,
    Parameter(ge=1, required=False, description="Cursor: the seq of the last event read."),
]


def _period(value: str | None) -> Period | None:
    return Period.parse(value) if value else None


@get(
    "/customers/{customer_id:str}",
    security=READ,
    summary="A customer's summary: subscriptions, balances, latest invoice",
    **CONDITIONAL,
)
async def customer_summary(
    portal: PortalService, caller: Caller, customer_id: str, if_none_match: IfNoneMatch = None
) -> Response[PortalCustomerSummary]:
    view = await portal.summary(customer_id, partner_id=caller.partner_id)
    return conditional(view, if_none_match)


@get(
    "/customers/{customer_id:str}/usage",
    security=READ,
    summary="A customer's usage of a period per meter, with a daily series",
    raises=[RefusedByRule],
    **CONDITIONAL,
)
async def customer_usage(
    portal: PortalService,
    caller: Caller,
    customer_id: str,
    period: PeriodParam = None,
    if_none_match: IfNoneMatch = None,
) -> Response[PortalUsage]:
    view = await portal.usage(customer_id, partner_id=caller.partner_id, period=_period(period))
    return conditional(view, if_none_match)


@get(
    "/customers/{customer_id:str}/estimate",
    security=READ,
    summary="A running estimate of the open period's charges, before tax",
    raises=[RefusedByRule],
    **CONDITIONAL,
)
async def charge_estimate(
    portal: PortalService,
    caller: Caller,
    customer_id: str,
    as_of: AsOf = None,
    if_none_match: IfNoneMatch = None,
) -> Response[PortalEstimate]:
    view = await portal.estimate(customer_id, partner_id=caller.partner_id, as_of=as_of)
    return conditional(view, if_none_match)


@get(
    "/customers/{customer_id:str}/invoices",
    security=READ,
    summary="A customer's invoices and memos, oldest first",
    **CONDITIONAL,
)
async def customer_invoices(
    portal: PortalService,
    caller: Caller,
    customer_id: str,
    status: StatusFilter = None,
    period: PeriodParam = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    if_none_match: IfNoneMatch = None,
) -> Response[PortalInvoiceList]:
    view = await portal.customer_invoices(
        customer_id,
        partner_id=caller.partner_id,
        status=status,
        period=_period(period),
        limit=limit,
        starting_after=starting_after,
    )
    return conditional(view, if_none_match)


@get(
    "/invoices/{invoice_id:str}",
    security=READ,
    summary="An invoice as the customer sees it: lines, tax, memos and payments",
    **CONDITIONAL,
)
async def invoice(
    portal: PortalService, caller: Caller, invoice_id: str, if_none_match: IfNoneMatch = None
) -> Response[PortalInvoice]:
    view = await portal.invoice(invoice_id, partner_id=caller.partner_id)
    return conditional(view, if_none_match)


@get(
    "/invoices/{invoice_id:str}/lines/{line_id:str}/events",
    security=READ,
    summary="The source events behind an invoice line (paginated by event seq)",
    **CONDITIONAL,
)
async def line_events(
    portal: PortalService,
    caller: Caller,
    invoice_id: str,
    line_id: str,
    limit: Limit = 50,
    starting_after: SeqCursor = None,
    if_none_match: IfNoneMatch = None,
) -> Response[PortalEventList]:
    view = await portal.line_events(
        invoice_id,
        line_id,
        partner_id=caller.partner_id,
        limit=limit,
        starting_after=starting_after,
    )
    return conditional(view, if_none_match)


router = Router(
    path="/experience/portal/v1",
    route_handlers=[
        customer_summary,
        customer_usage,
        charge_estimate,
        customer_invoices,
        invoice,
        line_events,
    ],
    tags=["experience-portal"],
)
