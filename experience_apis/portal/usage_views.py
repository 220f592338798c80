"""The customer portal's view of usage: per meter, what a period measured so far with a
daily series, and the running estimate of the open period's charges."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from canonical.model import Base
from canonical.time import Period
from process_apis.usage.estimates import EstimatedCharge, EstimateTotal
from process_apis.usage.summaries import MeterUsageSeries

__all__ = [
    "PortalDailyUsage",
    "PortalEstimate",
    "PortalEstimateTotal",
    "PortalEstimatedCharge",
    "PortalMeterUsage",
    "PortalUsage",
    "estimate_view",
    "usage_view",
]


class PortalDailyUsage(Base):
    day: date
    quantity: Decimal
    event_count: int


class PortalMeterUsage(Base):
    code: str
    name: str
    unit: str
    aggregation: Literal["sum", "count", "max", "unique_count", "latest"]
    quantity: Decimal  # over the whole period (so far)
    event_count: int
    # One entry per UTC day, each aggregated on its own: for sum and count the days add
    # up to the period's quantity; for max, unique_count and latest they need not.
    daily: list[PortalDailyUsage]


class PortalUsage(Base):
    customer_id: str
    period: str  # YYYY-MM
    period_start: date
    period_end: date  # exclusive
    open: bool  # the current period: usage so far, days up to today
    meters: list[PortalMeterUsage]


class PortalEstimatedCharge(Base):
    subscription_id: str
    charge_code: str
    kind: Literal["usage", "recurring", "minimum"]
    description: str
    meter_code: str | None
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    currency: str
    service_start: date
    service_end: date  # exclusive
    event_count: int


class PortalEstimateTotal(Base):
    currency: str
    subtotal: Decimal  # before tax


class PortalEstimate(Base):
    customer_id: str
    period: str
    period_start: date
    period_end: date
    # Usage counted up to this time: the as_of asked for (events before it), else when
    # the estimate was computed (every event stored for the period by then).
    as_of: datetime
    charges: list[PortalEstimatedCharge]
    totals: list[PortalEstimateTotal]


def usage_view(customer_id: str, period: Period, open_: bool, meters: list[MeterUsageSeries]):
    return PortalUsage(
        customer_id=customer_id,
        period=str(period),
        period_start=period.first_day,
        period_end=period.end.date(),
        open=open_,
        meters=[
            PortalMeterUsage(
                code=m.meter.code,
                name=m.meter.name,
                unit=m.meter.unit,
                aggregation=m.meter.aggregation,
                quantity=m.quantity,
                event_count=m.event_count,
                daily=[PortalDailyUsage(d.day, d.quantity, d.event_count) for d in m.daily],
            )
            for m in meters
        ],
    )


def estimate_view(
    customer_id: str,
    period: Period,
    as_of: datetime,
    charges: list[EstimatedCharge],
    totals: list[EstimateTotal],
) -> PortalEstimate:
    return PortalEstimate(
        customer_id=customer_id,
        period=str(period),
        period_start=period.first_day,
        period_end=period.end.date(),
        as_of=as_of,
        charges=[
            PortalEstimatedCharge(
                subscription_id=item.subscription_id,
                charge_code=item.charge.charge_code,
                kind=item.charge.kind,
                description=item.charge.description,
                meter_code=item.charge.meter_code,
                quantity=item.charge.quantity,
                unit_price=item.charge.unit_price,
                amount=item.charge.amount,
                currency=item.charge.currency,
                service_start=item.charge.period_start,
                service_end=item.charge.period_end,
                event_count=item.event_count,
            )
            for item in charges
        ],
        totals=[PortalEstimateTotal(currency=t.currency, subtotal=t.subtotal) for t in totals],
    )
