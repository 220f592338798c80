"""The CRM port over HTTP: calls a remote CRM System API (``/system/crm/v1``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from canonical.model import Amendment, Customer, Subscription
from system_apis.chunks import sorted_chunks
from system_apis.crm.port import (
    MAX_FILTER,
    MAX_LOOKUP,
    AmendmentInput,
    CustomerIds,
    CustomerInput,
    CustomerList,
    KnownCustomers,
    SubscriptionInput,
    SubscriptionList,
)
from system_apis.remote import RemoteSystem, segment

__all__ = ["HttpCrm"]


class HttpCrm:
    def __init__(self, remote: RemoteSystem) -> None:
        self._remote = remote

    async def put_customer(self, customer: Customer) -> Customer:
        return await self._remote.call(
            "PUT",
            f"/customers/{segment(customer.id)}",
            json=CustomerInput.of(customer),
            type=Customer,
        )

    async def get_customer(self, customer_id: str) -> Customer:
        return await self._remote.call("GET", f"/customers/{segment(customer_id)}", type=Customer)

    async def list_customers(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        partner_id: str | None = None,
    ) -> tuple[list[Customer], bool]:
        params = {"limit": limit, "starting_after": starting_after, "partner_id": partner_id}
        page = await self._remote.call("GET", "/customers", params=params, type=CustomerList)
        return page.data, page.has_more

    async def known_customer_ids(self, ids: Collection[str]) -> set[str]:
        known: set[str] = set()
        for chunk in sorted_chunks(ids, MAX_LOOKUP):
            answer = await self._remote.call(
                "POST", "/known-customers", json=CustomerIds(ids=chunk), type=KnownCustomers
            )
            known.update(answer.ids)
        return known

    async def put_subscription(self, subscription: Subscription) -> Subscription:
        return await self._remote.call(
            "PUT",
            f"/subscriptions/{segment(subscription.id)}",
            json=SubscriptionInput.of(subscription),
            type=Subscription,
        )

    async def get_subscription(self, subscription_id: str) -> Subscription:
        return await self._remote.call(
            "GET", f"/subscriptions/{segment(subscription_id)}", type=Subscription
        )

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        return await self._remote.collect(
            f"/customers/{segment(customer_id)}/subscriptions", SubscriptionList
        )

    async def subscriptions_active_between(
        self, start: date, end: date, customer_ids: Collection[str] | None = None
    ) -> list[Subscription]:
        base = {"start": start.isoformat(), "end": end.isoformat()}
        if customer_ids is None:
            return await self._remote.collect(
                "/active-subscriptions", SubscriptionList, params=base
            )
        found: list[Subscription] = []
        for chunk in sorted_chunks(customer_ids, MAX_FILTER):
            found += await self._remote.collect(
                "/active-subscriptions", SubscriptionList, params=base | {"customer_id": chunk}
            )
        return sorted(found, key=lambda s: s.id)

    async def active_subscriptions_page(
        self,
        start: date,
        end: date,
        *,
        customer_ids: Collection[str] | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> tuple[list[Subscription], bool]:
        if customer_ids is not None and not customer_ids:
            return [], False  # an empty filter matches nothing (omitting it would match all)
        params = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "limit": limit,
            "starting_after": starting_after,
            "customer_id": sorted(set(customer_ids)) if customer_ids is not None else None,
        }
        page = await self._remote.call(
            "GET", "/active-subscriptions", params=params, type=SubscriptionList
        )
        return page.data, page.has_more

    async def add_amendment(self, subscription_id: str, amendment: Amendment) -> Subscription:
        return await self._remote.call(
            "POST",
            f"/subscriptions/{segment(subscription_id)}/amendments",
            json=AmendmentInput(amendment.effective_from, amendment.plan_id),
            type=Subscription,
        )
