"""A customer's commercial terms in one billing period, as billing reads them: the
subscriptions active in it, each split at amendments into service segments, the price
plan of every segment and the meters those plans charge.

Read from the CRM and the billing engine on every request that needs them (a few
lookups): the views built from them are cached keyed by the terms themselves, so a
changed plan or amendment is never answered from a view rated on the old one."""

from __future__ import annotations

from datetime import datetime

import msgspec

from canonical import errors
from canonical.model import Meter, PricePlan, Subscription
from canonical.time import Period
from process_apis.billing.segments import Segment, segments
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["CustomerTerms", "TermsReader", "usage_period"]


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
        codes = [getattr(c, "meter_code", None) for c in plan.charges]
        return [self.meters[code] for code in dict.fromkeys(codes) if code in self.meters]

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
        plans = {plan_id: await self._billing.get_plan(plan_id) for plan_id in plan_ids}
        charged = {
            code
            for plan in plans.values()
            for c in plan.charges
            if (code := getattr(c, "meter_code", None)) is not None
        }
        meters = {}
        if charged:
            known = {m.code: m for m in await self._billing.list_meters()}
            meters = {code: known[code] for code in sorted(charged) if code in known}
        return CustomerTerms(
            customer_id=customer_id,
            period=period,
            subscriptions=subscriptions,
            plans=plans,
            meters=meters,
        )
