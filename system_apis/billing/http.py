"""``BillingPort`` over HTTP: a remote billing engine serving the System API contract
(``/system/billing/v1``), reached through ``RemoteSystem``."""

from __future__ import annotations

from collections.abc import Collection

from canonical.errors import NotFound
from canonical.model import Code, Meter, PricePlan, RatedCharge
from system_apis.billing.port import (
    MAX_EVENT_TYPE_FILTER,
    EventType,
    MeterList,
    PlanList,
    PlanRef,
    RatedChargeList,
    RatingRequest,
    fits,
    spec_body,
    to_wire,
)
from system_apis.chunks import sorted_chunks
from system_apis.remote import RemoteSystem, segment

__all__ = ["HttpBilling"]


def _segment(value: str, kind: object, what: str) -> str:
    """A path segment; a value the contract cannot address does not exist remotely either."""
    if not fits(value, kind):
        raise NotFound(f"{what} {value!r} does not exist")
    return segment(value)


class HttpBilling:
    def __init__(self, remote: RemoteSystem) -> None:
        self._remote = remote

    async def put_meter(self, meter: Meter) -> Meter:
        """The remote engine assigns the id of a new meter; an existing one keeps its id."""
        path = f"/meters/{_segment(meter.code, Code, 'meter')}"
        return await self._remote.call("PUT", path, json=spec_body(meter), type=Meter)

    async def get_meter(self, code: str) -> Meter:
        path = f"/meters/{_segment(code, Code, 'meter')}"
        return await self._remote.call("GET", path, type=Meter)

    async def meters_page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> MeterList:
        params = {
            "limit": limit,
            "starting_after": starting_after,
            "event_type": list(event_types) if event_types is not None else None,
        }
        return await self._remote.call("GET", "/meters", params=params, type=MeterList)

    async def list_meters(self) -> list[Meter]:
        return await self._remote.collect("/meters", MeterList)

    async def meters_for_event_types(self, event_types: Collection[str]) -> dict[str, list[Meter]]:
        wanted = (t for t in event_types if fits(t, EventType))
        found: dict[str, list[Meter]] = {}
        for chunk in sorted_chunks(wanted, MAX_EVENT_TYPE_FILTER):
            meters = await self._remote.collect("/meters", MeterList, params={"event_type": chunk})
            for meter in meters:
                found.setdefault(meter.event_type, []).append(meter)
        return found

    async def put_plan(self, plan: PricePlan) -> PricePlan:
        """The remote engine assigns the id of a new plan; an existing one keeps its id."""
        path = f"/plans/{_segment(plan.code, Code, 'plan')}"
        return await self._remote.call("PUT", path, json=spec_body(plan), type=PricePlan)

    async def get_plan(self, plan_id: str) -> PricePlan:
        path = f"/plans/{_segment(plan_id, PlanRef, 'plan')}"
        return await self._remote.call("GET", path, type=PricePlan)

    async def plans_page(self, *, limit: int, starting_after: str | None = None) -> PlanList:
        params = {"limit": limit, "starting_after": starting_after}
        return await self._remote.call("GET", "/plans", params=params, type=PlanList)

    async def list_plans(self) -> list[PricePlan]:
        return await self._remote.collect("/plans", PlanList)

    async def rate(self, request: RatingRequest) -> list[RatedCharge]:
        _segment(request.plan_id, PlanRef, "plan")  # same NotFound as in-process
        page = await self._remote.call("POST", "/rate", json=to_wire(request), type=RatedChargeList)
        return page.data
