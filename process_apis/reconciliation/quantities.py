"""Quantities: per customer and meter, what the stored events give today against what
the period's invoice and memos bill.

The event side is recomputed the way invoicing computes it (``SubscriptionBiller``),
from the same functions: for each subscription the period invoiced, its service segments
(``segments``: cut at its start and end, split at amendments), on each segment the
meters its plan then in force charges, each aggregated with the meter's aggregation over
the customer's stored events in that segment (``aggregate_windows``, as invoicing reads
them). A meter charged by two charges of a plan bills its quantity twice, and so counts
twice here.

Why not one aggregate over the calendar month: for ``sum`` and ``count`` it would make
no difference inside the billed windows (the aggregation is additive, so the segments
add up to the whole), but ``max``, ``unique_count`` and ``latest`` are not additive: a
period split by an amendment is billed one peak (or one distinct count, or one latest
value) per segment, and their sum is what the invoice lines hold. Without an amendment in
the period there is one segment and the two readings coincide. Events outside every
billed window (before the subscription starts, after it ends) are not billable and not
counted.

Which events: every stored event of the customer and meter's event type in the window,
as billing reads them. The ``matched`` flag records whether the mapping existed when the
event arrived; billing does not read it (an event whose customer or meter appeared later
is billed by the next run), so reconciliation does not either.

The invoiced side adds the quantities of every standing document of the period (see
``standing``) that carries a line for the meter, by kind: an invoice and a debit memo
add, a credit memo subtracts (memo lines carry positive quantities, the direction coming
from the kind, as their amounts do in the ERP). A late event therefore shows as a
difference until the memo that bills it is issued."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Meter, PricePlan, decimal_text
from canonical.money import ZERO
from canonical.time import Period, midnight
from process_apis.billing.aggregation import UsageWindow, aggregate_windows
from process_apis.billing.segments import segments
from process_apis.invoices.counting import direction, standing
from process_apis.reconciliation.report import (
    ReconciledQuantity,
    ReconciliationVariance,
    UninvoicedSubscription,
)
from process_apis.tables import invoice_lines, invoices
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["QuantityCheck", "QuantityResult"]


class QuantityResult(msgspec.Struct):
    rows: list[ReconciledQuantity]
    uninvoiced: list[UninvoicedSubscription]
    variances: list[ReconciliationVariance]


class _Tally(msgspec.Struct):
    quantity: Decimal = ZERO
    events: int = 0


class QuantityCheck:
    def __init__(self, sessions: async_sessionmaker, crm: CrmPort, billing: BillingPort) -> None:
        self._sessions = sessions
        self._crm = crm
        self._billing = billing

    async def run(self, period: Period) -> QuantityResult:
        invoiced, billed_subscriptions = await self._invoiced(period)
        meters = {m.code: m for m in await self._billing.list_meters()}
        expected, uninvoiced = await self._expected(period, meters, billed_subscriptions)
        rows, variances = [], []
        for customer_id, meter_code in sorted(expected.keys() | invoiced.keys()):
            tally = expected.get((customer_id, meter_code), _Tally())
            billed = invoiced.get((customer_id, meter_code), ZERO)
            meter = meters.get(meter_code)
            row = ReconciledQuantity(
                customer_id=customer_id,
                meter_code=meter_code,
                aggregation=meter.aggregation if meter else "unknown",
                event_count=tally.events,
                event_quantity=tally.quantity,
                invoiced_quantity=billed,
                difference=tally.quantity - billed,
                status="matched" if tally.quantity == billed else "variance",
            )
            rows.append(row)
            if row.status == "variance":
                variances.append(_variance(period, row))
        return QuantityResult(rows, uninvoiced, variances)

    async def _invoiced(self, period: Period):
        """Billed quantity per (customer, meter), and the subscriptions invoiced."""
        in_period = sa.and_(invoices.c.period_start == period.first_day, standing())
        async with self._sessions() as session:
            lines = await session.execute(
                sa.select(
                    invoices.c.customer_id,
                    invoices.c.kind,
                    invoice_lines.c.meter_code,
                    invoice_lines.c.quantity,
                )
                .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
                .where(in_period, invoice_lines.c.meter_code.is_not(None))
            )
            billed: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
            for customer_id, kind, meter_code, quantity in lines:
                billed[customer_id, meter_code] += direction(kind) * quantity
            # A voided invoice withdraws the period's billing of its subscription (its
            # reversing memo cancels its quantities): the subscription counts as uninvoiced.
            subscriptions = await session.execute(
                sa.select(invoices.c.subscription_id).where(
                    in_period, invoices.c.kind == "invoice", invoices.c.status != "void"
                )
            )
            return dict(billed), set(subscriptions.scalars())

    async def _expected(
        self, period: Period, meters: dict[str, Meter], billed_subscriptions: set[str]
    ) -> tuple[dict[tuple[str, str], _Tally], list[UninvoicedSubscription]]:
        """What invoicing would bill today per (customer, meter), over the subscriptions
        the period invoiced; the active ones it did not invoice, apart."""
        subscriptions = await self._crm.subscriptions_active_between(
            period.first_day, period.end.date()
        )
        plans: dict[str, PricePlan] = {}
        expected: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
        uninvoiced = []
        # Every (customer, segment) window's meters, aggregated in one grouped pass as
        # invoicing does; then tallied per charge on the meter.
        wanted: dict[UsageWindow, list[Meter]] = defaultdict(list)
        charges: list[tuple[UsageWindow, Counter[str]]] = []
        for subscription in subscriptions:
            if subscription.id not in billed_subscriptions:
                uninvoiced.append(
                    UninvoicedSubscription(
                        subscription_id=subscription.id, customer_id=subscription.customer_id
                    )
                )
                continue
            for segment in segments(subscription, period):
                if segment.plan_id not in plans:
                    plans[segment.plan_id] = await self._billing.get_plan(segment.plan_id)
                charged = Counter(
                    code
                    for c in plans[segment.plan_id].charges
                    if (code := getattr(c, "meter_code", None)) in meters
                )
                if not charged:
                    continue
                window = UsageWindow(
                    subscription.customer_id, midnight(segment.start), midnight(segment.end)
                )
                wanted[window].extend(meters[code] for code in charged)
                charges.append((window, charged))
        if wanted:
            async with self._sessions() as session:
                found = await aggregate_windows(session, wanted)
            for window, charged in charges:
                for code, times in charged.items():
                    tally = expected[window.customer_id, code]
                    tally.quantity += found[window][code].quantity * times
                    tally.events += found[window][code].event_count
        return dict(expected), uninvoiced


def _variance(period: Period, row: ReconciledQuantity) -> ReconciliationVariance:
    event, billed, diff = (
        decimal_text(row.event_quantity),
        decimal_text(row.invoiced_quantity),
        decimal_text(row.difference),
    )
    return ReconciliationVariance(
        kind="quantity_mismatch",
        subject=f"{period}:{row.customer_id}:{row.meter_code}",
        detail=(
            f"{period}: meter {row.meter_code} of customer {row.customer_id} measures {event} "
            f"from {row.event_count} stored events, but the period's invoice and memos bill "
            f"{billed} (difference {diff})"
        ),
        context={
            "period": str(period),
            "customer_id": row.customer_id,
            "meter_code": row.meter_code,
            "aggregation": row.aggregation,
            "event_count": row.event_count,
            "event_quantity": event,
            "invoiced_quantity": billed,
            "difference": diff,
        },
    )
