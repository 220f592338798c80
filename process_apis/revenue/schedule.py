"""How one document line's revenue is recognised: the entries of its schedule.

- A document defers its revenue on its ERP posting date (the document booked it to the
  revenue account; the entry moves it to the contract balance).
- The line recognises it over its service days: a flat fee or a minimum true-up ratably
  (the same share each day), usage as it was consumed (each day's share of the line's
  quantity). Cumulative amounts are rounded, never the days one by one, so the entries
  add up to the line exactly.
- A service day in an accounting period before the document's is recognised on the
  posting date instead (a cumulative catch-up: a correction never reopens a month).

The deferral and the recognitions of one date net, so a document recognised entirely on
its own posting date (a late memo, a void) leaves nothing to book.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import msgspec

from canonical.money import round_money

__all__ = ["Entry", "Plan", "entries", "service_days"]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    amount: Decimal  # signed
    service_start: date
    service_end: date  # exclusive
    posting_date: date
    # Quantity per service day (consumption); None: ratable.
    weights: list[Decimal] | None = None


class Entry(msgspec.Struct, frozen=True):
    on: date
    amount: Decimal  # signed: positive recognises, negative defers


def _month(day: date) -> tuple[int, int]:
    return day.year, day.month


def service_days(start: date, end: date) -> list[date]:
    """The days of [start, end); a window of no days is its first day."""
    return [start + timedelta(days=k) for k in range(max(1, (end - start).days))]


def _shares(plan: Plan, days: int) -> list[Decimal]:
    weights = plan.weights
    # Usage with nothing measured per day (a line of quantity zero) falls back to ratable.
    if weights is None or len(weights) != days or sum(weights, Decimal(0)) <= 0:
        return [Decimal(1)] * days
    return weights


def entries(plan: Plan) -> list[Entry]:
    """The schedule's entries by date, those of one date netted (zero ones left out)."""
    days = service_days(plan.service_start, plan.service_end)
    shares = _shares(plan, len(days))
    whole = sum(shares, Decimal(0))
    by_date: dict[date, Decimal] = defaultdict(Decimal)
    by_date[plan.posting_date] -= plan.amount
    cumulative = Decimal(0)
    recognised = Decimal(0)
    for day, share in zip(days, shares, strict=True):
        cumulative += share
        through = round_money(plan.amount * cumulative / whole, plan.currency)
        on = plan.posting_date if _month(day) < _month(plan.posting_date) else day
        by_date[on] += through - recognised
        recognised = through
    return [Entry(on, amount) for on, amount in sorted(by_date.items()) if amount != 0]
