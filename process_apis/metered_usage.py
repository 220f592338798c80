"""A customer's usage per meter in one calendar-month period as the partner API shows
it: what its events measure and what the period's documents bill, without the daily
series. Read by ``UsageSummaries``, as the portal's usage is, so both list the same
meters with the same quantities (see ``process_apis.usage.summaries`` for which meters
and what each quantity counts)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from canonical.model import Meter
from canonical.time import Period
from process_apis.usage.summaries import UsageSummaries
from process_apis.usage.terms import TermsReader

__all__ = ["MeterUsage", "MeteredUsage"]


class MeterUsage(msgspec.Struct, frozen=True, kw_only=True):
    meter: Meter
    quantity: Decimal
    event_count: int
    invoiced_quantity: Decimal | None


class MeteredUsage:
    def __init__(self, terms: TermsReader, summaries: UsageSummaries) -> None:
        self._terms = terms
        self._summaries = summaries

    async def period(self, customer_id: str, period: Period) -> list[MeterUsage]:
        """The customer's usage in ``period``, one entry per meter, by meter code."""
        terms = await self._terms.read(customer_id, period)
        return [
            MeterUsage(
                meter=s.meter,
                quantity=s.quantity,
                event_count=s.event_count,
                invoiced_quantity=s.invoiced_quantity,
            )
            for s in await self._summaries.period(terms)
        ]
