"""A customer's usage per meter in one calendar-month period: what its events measure and
what the period's documents bill.

Which meters: those the price plans of the customer's subscriptions charge at any time
in the period, and any other meter a document of the period bills.

``quantity`` is the meter's aggregation over every stored event of the customer in the
whole period, computed as billing computes it (``aggregate_windows``); for the open
period it is the usage so far. ``invoiced_quantity`` adds the meter's lines on the
period's documents that count (``standing``: not drafts, not voids that never reached
the ERP), invoices and debit memos adding and credit memos subtracting, as
reconciliation counts them; null when no document bills the meter.

The two may differ, and that is why both are shown: usage that arrived after the
invoice and is not corrected yet, events outside the subscription's term, and for
``max``, ``unique_count`` and ``latest`` a period split by a plan change, which is
billed one aggregate per part."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Meter
from canonical.money import ZERO
from canonical.time import Period
from process_apis.billing.aggregation import UsageWindow, aggregate_windows
from process_apis.reconciliation.quantities import direction, standing
from process_apis.tables import invoice_lines, invoices
from process_apis.usage.terms import TermsReader
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["MeterUsage", "MeteredUsage"]


class MeterUsage(msgspec.Struct, frozen=True, kw_only=True):
    meter: Meter
    quantity: Decimal
    event_count: int
    invoiced_quantity: Decimal | None


class MeteredUsage:
    def __init__(self, sessions: async_sessionmaker, crm: CrmPort, billing: BillingPort) -> None:
        self._sessions = sessions
        self._billing = billing
        # The meters a period's plans charge, read as billing reads them.
        self._terms = TermsReader(crm, billing)

    async def period(self, customer_id: str, period: Period) -> list[MeterUsage]:
        """The customer's usage in ``period``, one entry per meter, by meter code."""
        meters = dict((await self._terms.read(customer_id, period)).meters)
        invoiced = await self._invoiced(customer_id, period)
        if invoiced.keys() - meters.keys():
            # A meter only the documents bill (no plan of the period charges it now).
            meters.update(
                (m.code, m) for m in await self._billing.list_meters() if m.code in invoiced
            )
        wanted = [meters[code] for code in sorted(meters)]
        if not wanted:
            return []
        window = UsageWindow(customer_id, period.start, period.end)
        async with self._sessions() as session:
            measured = (await aggregate_windows(session, {window: wanted}))[window]
        return [
            MeterUsage(
                meter=meter,
                quantity=measured[meter.code].quantity,
                event_count=measured[meter.code].event_count,
                invoiced_quantity=invoiced.get(meter.code),
            )
            for meter in wanted
        ]

    async def _invoiced(self, customer_id: str, period: Period) -> dict[str, Decimal]:
        query = (
            sa.select(invoices.c.kind, invoice_lines.c.meter_code, invoice_lines.c.quantity)
            .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
            .where(
                invoices.c.customer_id == customer_id,
                invoices.c.period_start == period.first_day,
                invoices.c.status != "draft",
                standing(),
                invoice_lines.c.meter_code.is_not(None),
            )
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        billed: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for kind, meter_code, quantity in rows:
            billed[meter_code] += direction(kind) * quantity
        return dict(billed)
