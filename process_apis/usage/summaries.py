"""A customer's usage of one period per meter: what its events measure, what the
period's documents bill, and on request a daily series. The portal's usage view and the
Partner API's both read it, so they list the same meters with the same quantities.

Which meters: those the price plans of the customer's subscriptions charge at any time
in the period, and any other meter a document of the period bills (after a plan change,
a meter the invoice billed that no plan of the period charges now), by code.

``quantity`` is the meter's aggregation over every stored event of the customer in the
whole calendar period, as billing aggregates (``aggregate_windows``: the same exact
semantics per aggregation); for the open period it is the usage so far.
``invoiced_quantity`` adds the meter's lines on the period's documents that count
(``standing``: not drafts, not voids that never reached the ERP), invoices and debit
memos adding and credit memos subtracting, as reconciliation counts them; None when no
document bills the meter. The two may differ: usage that arrived after the invoice and
is not corrected yet, events outside the subscription's term, and for ``max``,
``unique_count`` and ``latest`` a period split by a plan change, which is billed one
aggregate per part.

The daily series applies the meter's aggregation to each UTC day on its own
(``aggregate_days``: one query per event type for all the days): for ``sum`` and
``count`` the days add up to the period, for ``max``, ``unique_count`` and ``latest``
they do not (the largest value of a day, the distinct values seen that day, the day's
last value), so the period's quantity is measured over its own window. For the open
period the series stops at ``through``."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Meter
from canonical.money import ZERO
from canonical.time import Period, midnight
from process_apis.billing.aggregation import UsageWindow, aggregate_days, aggregate_windows
from process_apis.invoices.counting import counted, direction
from process_apis.tables import invoice_lines, invoices
from process_apis.usage.terms import CustomerTerms, meters_by_code
from system_apis.billing.port import BillingPort

__all__ = ["DayUsage", "MeterUsageSeries", "UsageSummaries"]


class DayUsage(msgspec.Struct, frozen=True):
    day: date
    quantity: Decimal
    event_count: int


class MeterUsageSeries(msgspec.Struct, frozen=True, kw_only=True):
    meter: Meter
    quantity: Decimal
    event_count: int
    invoiced_quantity: Decimal | None  # None: no document of the period bills the meter
    daily: list[DayUsage]  # empty unless a series was asked for


class UsageSummaries:
    def __init__(self, sessions: async_sessionmaker, billing: BillingPort) -> None:
        self._sessions = sessions
        # Resolves the meters only the period's documents bill.
        self._billing = billing

    async def period(
        self, terms: CustomerTerms, through: date | None = None
    ) -> list[MeterUsageSeries]:
        """Per meter of ``terms.period`` (charged or billed), by code: its quantity in the
        period, what the period's documents bill of it, and with ``through`` one entry
        per day from the period's first day to ``through`` (inclusive, capped at the
        period's last day)."""
        period, customer = terms.period, terms.customer_id
        invoiced = await self._invoiced(customer, period)
        meters = dict(terms.meters)
        if billed_only := invoiced.keys() - meters.keys():
            meters |= await meters_by_code(self._billing, billed_only)
        wanted = [meters[code] for code in sorted(meters)]
        if not wanted:
            return []
        whole = UsageWindow(customer, period.start, period.end)
        days: list[date] = []
        if through is not None:
            last = min(through, period.end.date() - timedelta(days=1))
            days = [
                period.first_day + timedelta(days=n)
                for n in range((last - period.first_day).days + 1)
            ]
        async with self._sessions() as session:
            total = (await aggregate_windows(session, {whole: wanted}))[whole]
            measured = (
                await aggregate_days(
                    session, [customer], wanted, days[0], days[-1] + timedelta(days=1)
                )
                if days
                else {}
            )
        day_windows = [
            UsageWindow(customer, midnight(d), midnight(d + timedelta(days=1))) for d in days
        ]
        return [
            MeterUsageSeries(
                meter=meter,
                quantity=total[meter.code].quantity,
                event_count=total[meter.code].event_count,
                invoiced_quantity=invoiced.get(meter.code),
                daily=[
                    DayUsage(
                        day,
                        measured[window][meter.code].quantity,
                        measured[window][meter.code].event_count,
                    )
                    for day, window in zip(days, day_windows, strict=True)
                ],
            )
            for meter in wanted
        ]

    async def _invoiced(self, customer_id: str, period: Period) -> dict[str, Decimal]:
        """Per meter code, the quantity the period's standing documents bill."""
        query = (
            sa.select(invoices.c.kind, invoice_lines.c.meter_code, invoice_lines.c.quantity)
            .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
            .where(
                invoices.c.customer_id == customer_id,
                invoices.c.period_start == period.first_day,
                counted(),
                invoice_lines.c.meter_code.is_not(None),
            )
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        billed: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for kind, meter_code, quantity in rows:
            billed[meter_code] += direction(kind) * quantity
        return dict(billed)
