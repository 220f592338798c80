"""A customer's usage of one period per meter, with a daily series.

Every meter the customer's plans charge in the period is measured over every stored
event of the customer in the whole calendar period, as billing aggregates
(``aggregate_windows``: the same exact semantics per aggregation). The daily series
applies the meter's aggregation to each UTC day on its own (``aggregate_days``: one
query per event type for all the days): for ``sum`` and ``count`` the days add up to
the period, for ``max``, ``unique_count`` and ``latest`` they do not (the largest value
of a day, the distinct values seen that day, the day's last value), so the period's
quantity is measured over its own window. For the open period the series stops at
``through``."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Meter
from canonical.time import midnight
from process_apis.billing.aggregation import UsageWindow, aggregate_days, aggregate_windows
from process_apis.usage.terms import CustomerTerms

__all__ = ["DayUsage", "MeterUsageSeries", "UsageSummaries"]


class DayUsage(msgspec.Struct, frozen=True):
    day: date
    quantity: Decimal
    event_count: int


class MeterUsageSeries(msgspec.Struct, frozen=True, kw_only=True):
    meter: Meter
    quantity: Decimal
    event_count: int
    daily: list[DayUsage]


class UsageSummaries:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def period(self, terms: CustomerTerms, through: date) -> list[MeterUsageSeries]:
        """Per meter charged in ``terms.period``, by code: its quantity in the period and
        one entry per day from the period's first day to ``through`` (inclusive, capped
        at the period's last day)."""
        meters = terms.charged_meters()
        if not meters:
            return []
        period = terms.period
        last = min(through, period.end.date() - timedelta(days=1))
        days = [
            period.first_day + timedelta(days=n) for n in range((last - period.first_day).days + 1)
        ]
        customer = terms.customer_id
        whole = UsageWindow(customer, period.start, period.end)
        async with self._sessions() as session:
            total = (await aggregate_windows(session, {whole: meters}))[whole]
            measured = await aggregate_days(
                session, [customer], meters, period.first_day, last + timedelta(days=1)
            )
        day_windows = [
            UsageWindow(customer, midnight(d), midnight(d + timedelta(days=1))) for d in days
        ]
        return [
            MeterUsageSeries(
                meter=meter,
                quantity=total[meter.code].quantity,
                event_count=total[meter.code].event_count,
                daily=[
                    DayUsage(
                        day,
                        measured[window][meter.code].quantity,
                        measured[window][meter.code].event_count,
                    )
                    for day, window in zip(days, day_windows, strict=True)
                ],
            )
            for meter in meters
        ]
