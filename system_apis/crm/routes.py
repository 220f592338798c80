"""The CRM System API (``/system/crm/v1``): the CRM port over HTTP.

The port arrives by dependency injection as ``crm``; canonical errors raised here become
problem+json at the gateway.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Router, get, post, put
from litestar.exceptions import NotFoundException
from litestar.params import Dependency, Parameter

from canonical.access import requires
from canonical.ids import new_id
from canonical.model import Customer, Subscription
from system_apis.crm.port import (
    ID_PATTERN,
    MAX_FILTER,
    AmendmentInput,
    CrmPort,
    CustomerIds,
    CustomerInput,
    CustomerList,
    KnownCustomers,
    SubscriptionInput,
    SubscriptionList,
)
from system_apis.routing import MAX_DOCUMENT_BYTES, Limit, StartingAfter, page_in_memory

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("system:read")
WRITE = requires("system:write")

Crm = Annotated[CrmPort, Dependency(skip_validation=True)]
# A caller-chosen id must be able to be a key; lookups take any string (unknown: 404).
NewId = Annotated[str, Parameter(max_length=64, pattern=ID_PATTERN)]
IdFilter = Annotated[str | None, Parameter(max_length=64, pattern=ID_PATTERN, required=False)]
CustomerFilter = Annotated[
    list[str] | None,
    Parameter(
        query="customer_id",
        max_items=MAX_FILTER,
        required=False,
        description="Only these customers (repeat the parameter).",
    ),
]


# Creations without a path parameter still answer 404 for an unknown parent or customer.
@post("/customers", security=WRITE, operation_id="crmCreateCustomer", raises=[NotFoundException])
async def create_customer(crm: Crm, data: CustomerInput) -> Customer:
    """Create a customer account with a server-assigned id (404: unknown parent)."""
    return await crm.put_customer(data.with_id(new_id("cus")))


@put("/customers/{customer_id:str}", security=WRITE, operation_id="crmPutCustomer")
async def put_customer(crm: Crm, customer_id: NewId, data: CustomerInput) -> Customer:
    """Create or replace the customer with this (caller-chosen) id."""
    return await crm.put_customer(data.with_id(customer_id))


@get("/customers/{customer_id:str}", security=READ, operation_id="crmGetCustomer")
async def get_customer(crm: Crm, customer_id: str) -> Customer:
    return await crm.get_customer(customer_id)


@get("/customers", security=READ, operation_id="crmListCustomers")
async def list_customers(
    crm: Crm,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
    partner_id: IdFilter = None,
) -> CustomerList:
    data, has_more = await crm.list_customers(
        limit=limit, starting_after=starting_after, partner_id=partner_id
    )
    return CustomerList(data=data, has_more=has_more)


@post("/known-customers", security=READ, operation_id="crmKnownCustomers", status_code=200)
async def known_customers(crm: Crm, data: CustomerIds) -> KnownCustomers:
    """Which of the given ids are known customers (a read, sent as a body for size)."""
    return KnownCustomers(ids=sorted(await crm.known_customer_ids(data.ids)))


@get(
    "/customers/{customer_id:str}/subscriptions",
    security=READ,
    operation_id="crmListCustomerSubscriptions",
)
async def customer_subscriptions(
    crm: Crm, customer_id: str, limit: Limit = 50, starting_after: StartingAfter = None
) -> SubscriptionList:
    # A customer holds a handful of subscriptions: page the full list in memory.
    subs = await crm.list_subscriptions(customer_id)
    data, has_more = page_in_memory(subs, lambda s: s.id, limit, starting_after)
    return SubscriptionList(data=data, has_more=has_more)


@post(
    "/subscriptions",
    security=WRITE,
    operation_id="crmCreateSubscription",
    raises=[NotFoundException],
)
async def create_subscription(crm: Crm, data: SubscriptionInput) -> Subscription:
    """Create a subscription with a server-assigned id (404: unknown customer)."""
    return await crm.put_subscription(data.with_id(new_id("sub")))


@put("/subscriptions/{subscription_id:str}", security=WRITE, operation_id="crmPutSubscription")
async def put_subscription(
    crm: Crm, subscription_id: NewId, data: SubscriptionInput
) -> Subscription:
    """Create or replace a subscription, amendments included."""
    return await crm.put_subscription(data.with_id(subscription_id))


@get("/subscriptions/{subscription_id:str}", security=READ, operation_id="crmGetSubscription")
async def get_subscription(crm: Crm, subscription_id: str) -> Subscription:
    return await crm.get_subscription(subscription_id)


@get("/active-subscriptions", security=READ, operation_id="crmActiveSubscriptions")
async def active_subscriptions(
    crm: Crm,
    start: date,
    end: date,
    customer_id: CustomerFilter = None,
    limit: Limit = 100,
    starting_after: StartingAfter = None,
) -> SubscriptionList:
    """Subscriptions overlapping [start, end), sorted by id."""
    data, has_more = await crm.active_subscriptions_page(
        start, end, customer_ids=customer_id, limit=limit, starting_after=starting_after
    )
    return SubscriptionList(data=data, has_more=has_more)


@post(
    "/subscriptions/{subscription_id:str}/amendments",
    security=WRITE,
    operation_id="crmAddAmendment",
)
async def add_amendment(crm: Crm, subscription_id: str, data: AmendmentInput) -> Subscription:
    """From ``effective_from`` on, the subscription is on ``plan_id``."""
    return await crm.add_amendment(subscription_id, data.to_canonical())


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/system/crm/v1",
    route_handlers=[
        create_customer,
        put_customer,
        get_customer,
        list_customers,
        known_customers,
        customer_subscriptions,
        create_subscription,
        put_subscription,
        get_subscription,
        active_subscriptions,
        add_amendment,
    ],
    tags=["system-crm"],
    opt={"rate_limit": "system"},
)
