"""A customer's commercial terms in one billing period, as billing reads them: the
subscriptions active in it, each split at amendments into service segments, the price
plan of every segment and the meters those plans charge.

Read from the CRM and the billing engine on every request that needs them (a few
lookups): the views built from them are cached keyed by the terms themselves, so a
changed plan or amendment is never answered from a view rated on the old one. The
billing port reads plans and meters one at a time (no batch read): each distinct plan
and each charged meter is asked for once, a few at a time, rather than one after the
other or by listing every meter of the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TypeVar

import msgspec

from canonical import errors
from canonical.model import Meter, PricePlan, Subscription
from canonical.time import Period
from process_apis.billing.segments import Segment, plan_meters, segments
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["CustomerTerms", "TermsReader", "meters_by_code", "usage_period"]

# Lookups of one read in flight at once: a request waits one round trip, not one per
# plan or meter, and holds no more than a few connections of the engine's pool.
LOOKUPS = 4

K = TypeVar("K")
V = TypeVar("V")


def usage_period(requested: Period | None, now: datetime) -> Period:
    """The period a usage read is about: the one asked for, else the open one. A period
    that has not started has no usage to show: refused, not answered with zeros."""
    open_period = Period.containing(now)
    if requested is None:
        return open_period
    if requested.start > open_period.start:
        raise errors.BusinessRuleViolation(
            f"period {requested} has not started (the open period is {open_period})",
            code="period_not_started",
        )
    return requested


class CustomerTerms(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    period: Period
    subscriptions: list[Subscription]  # active in the period, by id
    plans: dict[str, PricePlan]  # of every segment, by plan id
    meters: dict[str, Meter]  # charged by those plans, by code

    def segments(self) -> list[tuple[Subscription, Segment]]:
        """Every service segment of the period, subscription by subscription."""
        return [(s, segment) for s in self.subscriptions for segment in segments(s, self.period)]

    def plan_meters(self, plan: PricePlan) -> list[Meter]:
        """The meters a plan charges, in charge order (as a billing run rates them)."""
        return plan_meters(plan, self.meters)

    def charged_meters(self) -> list[Meter]:
        """Every meter charged in the period, by code."""
        return [self.meters[code] for code in sorted(self.meters)]


class TermsReader:
    def __init__(self, crm: CrmPort, billing: BillingPort) -> None:
        self._crm = crm
        self._billing = billing

    async def read(self, customer_id: str, period: Period) -> CustomerTerms:
        subscriptions = await self._crm.subscriptions_active_between(
            period.first_day, period.end.date(), customer_ids=[customer_id]
        )
        subscriptions = sorted(subscriptions, key=lambda s: s.id)
        plan_ids = sorted({seg.plan_id for s in subscriptions for seg in segments(s, period)})
        plans = await _each(self._billing.get_plan, plan_ids)
        charged = {
            code
            for plan in plans.values()
            for c in plan.charges
            if (code := getattr(c, "meter_code", None)) is not None
        }
        return CustomerTerms(
            customer_id=customer_id,
            period=period,
            subscriptions=subscriptions,
            plans=plans,
            meters=await meters_by_code(self._billing, charged),
        )


async def meters_by_code(billing: BillingPort, codes: Iterable[str]) -> dict[str, Meter]:
    """The meters of ``codes`` the engine knows, by code (a code it does not know is
    left out)."""

    async def meter(code: str) -> Meter | None:
        try:
            return await billing.get_meter(code)
        except errors.NotFound:
            return None

    found = await _each(meter, sorted(set(codes)))
    return {code: m for code, m in found.items() if m is not None}


async def _each(lookup: Callable[[K], Awaitable[V]], keys: list[K]) -> dict[K, V]:
    """``lookup`` of every key, ``LOOKUPS`` at a time, in the order of ``keys``. The
    first error is raised as is (a ``NotFound`` stays a 404) and cancels the others."""
    gate = asyncio.Semaphore(LOOKUPS)

    async def one(key: K) -> V:
        async with gate:
            return await lookup(key)

    tasks = [asyncio.ensure_future(one(key)) for key in keys]
    try:
        values = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # none left running unseen
        raise
    return dict(zip(keys, values, strict=True))
