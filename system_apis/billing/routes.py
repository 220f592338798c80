"""The billing engine as a System API: ``/system/billing/v1``.

Handlers get the port by dependency injection (``billing``) and raise canonical errors;
the gateway renders problems. Bodies are the ``*Spec`` Structs, so the schema states
every limit and the handlers only translate."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post, put
from litestar.exceptions import NotFoundException
from litestar.params import Dependency, Parameter

from canonical.access import requires
from canonical.ids import new_id
from canonical.model import Code, Meter, PricePlan
from system_apis.billing.port import (
    MAX_EVENT_TYPE_FILTER,
    BillingPort,
    MeterList,
    MeterSpec,
    PlanList,
    PlanRef,
    PlanSpec,
    RatedChargeList,
    RatingSpec,
)
from system_apis.routing import MAX_DOCUMENT_BYTES, Limit, StartingAfter

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("system:read")
WRITE = requires("system:write")

# The port the app provides; it is an implementation, not request data, so the signature
# model must not try to validate it (a Protocol has no isinstance check).
Port = Annotated[BillingPort, Dependency(skip_validation=True)]

CodePath = Annotated[
    str,
    Parameter(description="The resource's code.", pattern=Code.__metadata__[0].pattern),
]
PlanCodePath = Annotated[
    str, Parameter(description="The plan's code.", pattern=Code.__metadata__[0].pattern)
]
PlanRefPath = Annotated[
    str,
    Parameter(description="The plan's id or its code.", pattern=PlanRef.__metadata__[0].pattern),
]
EventTypes = Annotated[
    list[str] | None,
    Parameter(
        query="event_type",
        required=False,
        max_items=MAX_EVENT_TYPE_FILTER,
        description="Only meters of these event types (repeat the parameter).",
    ),
]


@put("/meters/{code:str}", security=WRITE, summary="Create or replace a meter", status_code=200)
async def put_meter(billing: Port, code: CodePath, data: MeterSpec) -> Meter:
    return await billing.put_meter(data.to_meter(id=new_id("mtr"), code=code))


@get("/meters/{code:str}", security=READ, summary="Get a meter")
async def get_meter(billing: Port, code: CodePath) -> Meter:
    return await billing.get_meter(code)


@get("/meters", security=READ, summary="List meters")
async def list_meters(
    billing: Port,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    event_types: EventTypes = None,
) -> MeterList:
    return await billing.meters_page(
        limit=limit, starting_after=starting_after, event_types=event_types
    )


# Both operations on /plans/{plan} name the segment alike: one path, two readings.
@put(
    "/plans/{plan:str}",
    security=WRITE,
    summary="Create or replace a price plan by code",
    status_code=200,
)
async def put_plan(billing: Port, plan: PlanCodePath, data: PlanSpec) -> PricePlan:
    return await billing.put_plan(data.to_plan(id=new_id("plan"), code=plan))


@get("/plans/{plan:str}", security=READ, summary="Get a price plan by id or code")
async def get_plan(billing: Port, plan: PlanRefPath) -> PricePlan:
    return await billing.get_plan(plan)


@get("/plans", security=READ, summary="List price plans")
async def list_plans(
    billing: Port, limit: Limit = 20, starting_after: StartingAfter = None
) -> PlanList:
    return await billing.plans_page(limit=limit, starting_after=starting_after)


@post(
    "/rate",
    security=WRITE,
    summary="Rate a period's quantities against a plan",
    status_code=200,
    raises=[NotFoundException],
)
async def rate(billing: Port, data: RatingSpec) -> RatedChargeList:
    return RatedChargeList(data=await billing.rate(data.to_request()), has_more=False)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/system/billing/v1",
    route_handlers=[put_meter, get_meter, list_meters, put_plan, get_plan, list_plans, rate],
    tags=["system-billing"],
    opt={"rate_limit": "system"},
)
