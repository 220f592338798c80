"""Service windows of a subscription within a billing period, split at amendments so
each part of the period is rated on the terms then in force, and the one step that
rates a segment: billing runs and the running estimate both rate through it, so an
estimate is what the invoice would bill."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import msgspec

from canonical.model import Meter, PricePlan, RatedCharge, Subscription
from canonical.time import Period, midnight
from process_apis.billing.aggregation import MeterQuantity, UsageWindow
from system_apis.billing.port import BillingPort, RatingRequest

__all__ = ["Segment", "plan_meters", "rate_segment", "segment_window", "segments"]


class Segment(msgspec.Struct, frozen=True):
    start: date
    end: date  # exclusive
    plan_id: str


def segments(subscription: Subscription, period: Period) -> list[Segment]:
    start = max(subscription.start_date, period.first_day)
    period_end = period.end.date()
    end = min(subscription.end_date or period_end, period_end)
    if start >= end:
        return []
    amendments = sorted(subscription.amendments, key=lambda a: a.effective_from)
    plan_id = subscription.plan_id
    for amendment in amendments:
        if amendment.effective_from <= start:
            plan_id = amendment.plan_id
    cuts = [a for a in amendments if start < a.effective_from < end]
    out: list[Segment] = []
    cursor = start
    for amendment in cuts:
        out.append(Segment(cursor, amendment.effective_from, plan_id))
        cursor, plan_id = amendment.effective_from, amendment.plan_id
    out.append(Segment(cursor, end, plan_id))
    return out


def plan_meters(plan: PricePlan, meters: Mapping[str, Meter]) -> list[Meter]:
    """The meters ``plan`` charges, each once, in charge order; ``meters`` by code (a
    meter missing there is not measured: its charges rate a quantity of zero)."""
    codes = [getattr(c, "meter_code", None) for c in plan.charges]
    return [meters[code] for code in dict.fromkeys(codes) if code in meters]


def segment_window(
    customer_id: str, segment: Segment, until: datetime | None = None
) -> UsageWindow:
    """The customer's usage a segment rates: its days, cut at ``until`` if earlier."""
    start, end = midnight(segment.start), midnight(segment.end)
    if until is not None:
        end = max(start, min(end, until))
    return UsageWindow(customer_id, start, end)


async def rate_segment(
    billing: BillingPort,
    period: Period,
    segment: Segment,
    meters: list[Meter],
    quantities: Mapping[str, MeterQuantity],
) -> list[RatedCharge]:
    """The segment's charges on its plan, with the quantities measured in its window
    (one per meter of ``meters``): flat fees prorated to its days and minimum
    commitments trued up against them by the billing system."""
    return await billing.rate(
        RatingRequest(
            plan_id=segment.plan_id,
            period_start=period.first_day,
            period_end=period.end.date(),
            service_start=segment.start,
            service_end=segment.end,
            quantities={m.code: quantities[m.code].quantity for m in meters},
        )
    )
