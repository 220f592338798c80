"""Service windows of a subscription within a billing period, split at amendments so
each part of the period is rated on the terms then in force."""

from __future__ import annotations

from datetime import date

import msgspec

from canonical.model import Subscription
from canonical.time import Period

__all__ = ["Segment", "segments"]


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
