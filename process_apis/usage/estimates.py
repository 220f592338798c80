"""A running estimate of a period's charges: what its invoice would bill, before tax, if
the period closed with the usage stored so far.

Rated as a billing run rates, through the same step (``billing.segments.rate_segment``):
each subscription active in the period is split at amendments into service segments,
each segment's meters are aggregated over its own window, and the quantities are rated
through the billing port with the period and the segment's service window, so flat
fees are prorated and minimum commitments trued up as on the invoice.

``as_of`` bounds the usage by event time: only events before it count (an estimate as
it stood then). Without it, every event stored for the period counts."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Meter, RatedCharge
from canonical.money import total
from process_apis.billing.aggregation import UsageWindow, aggregate_windows
from process_apis.billing.segments import rate_segment, segment_window
from process_apis.usage.terms import CustomerTerms
from system_apis.billing.port import BillingPort

__all__ = ["ChargeEstimates", "EstimateTotal", "EstimatedCharge"]


class EstimatedCharge(msgspec.Struct, frozen=True, kw_only=True):
    subscription_id: str
    plan_id: str
    charge: RatedCharge
    event_count: int  # events behind a usage charge so far; 0 for fees


class EstimateTotal(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    subtotal: Decimal


class ChargeEstimates:
    def __init__(self, sessions: async_sessionmaker, billing: BillingPort) -> None:
        self._sessions = sessions
        self._billing = billing

    async def estimate(
        self, terms: CustomerTerms, as_of: datetime | None = None
    ) -> tuple[list[EstimatedCharge], list[EstimateTotal]]:
        """The period's charges rated on the usage so far, and their sum per currency."""
        period = terms.period
        end = period.end if as_of is None else min(as_of, period.end)
        # Segments of two subscriptions may share a window (meters measured once each).
        wanted: dict[UsageWindow, list[Meter]] = defaultdict(list)
        parts = []
        for subscription, segment in terms.segments():
            plan = terms.plans[segment.plan_id]
            meters = terms.plan_meters(plan)
            window = segment_window(terms.customer_id, segment, until=end)
            wanted[window].extend(meters)
            parts.append((subscription, segment, plan, meters, window))
        measured = {}
        if any(wanted.values()):
            async with self._sessions() as session:
                measured = await aggregate_windows(session, wanted)
        charges: list[EstimatedCharge] = []
        for subscription, segment, plan, meters, window in parts:
            quantities = measured.get(window, {})
            rated = await rate_segment(self._billing, period, segment, meters, quantities)
            for charge in rated:
                found = quantities.get(charge.meter_code or "")
                charges.append(
                    EstimatedCharge(
                        subscription_id=subscription.id,
                        plan_id=plan.id,
                        charge=charge,
                        event_count=found.event_count if found and charge.kind == "usage" else 0,
                    )
                )
        by_currency: dict[str, list[Decimal]] = defaultdict(list)
        for item in charges:
            by_currency[item.charge.currency].append(item.charge.amount)
        totals = [
            EstimateTotal(currency=currency, subtotal=total(amounts, currency))
            for currency, amounts in sorted(by_currency.items())
        ]
        return charges, totals
