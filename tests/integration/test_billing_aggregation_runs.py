"""Billing runs large enough to batch (a fiftieth of the run per transaction, here three
subscriptions), whose usage is aggregated in SQL a chunk at a time, on SQLite and
PostgreSQL: every usage line carries the quantity and event count the reference
aggregation gives for its subscription's segment (amended and partial months too); a
batch meeting an invoice another runner wrote meanwhile keeps the rest and bills nothing
twice; a run failing mid-batch leaves none of that batch, and the numbers stay gapless
once a new run bills the rest."""

from __future__ import annotations

import contextlib
import random
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.ids import new_id
from canonical.model import (
    Amendment,
    Invoice,
    InvoiceLine,
    Meter,
    PerUnitCharge,
    PricePlan,
    Subscription,
    TaxLine,
)
from canonical.time import Period, midnight, utcnow
from gateway.settings import Settings
from gateway.wiring import build_container
from process_apis.billing.aggregation import aggregate
from process_apis.billing.runs import BillingRunService
from process_apis.billing.segments import segments
from process_apis.invoices.store import write_invoices
from process_apis.tables import invoices
from tests.support.seeding import EVERY_CHARGE_PLAN, customer, seed
from tests.support.usage import store

PERIOD = Period(2026, 3)
SUBSCRIPTIONS = 150  # batches of 3
SEATS = Meter(
    id="mtr_seats", code="seats", name="Seats", event_type="seats", aggregation="latest", field="n"
)
SEATS_PLAN = PricePlan(
    id="plan_seats",
    code="seats",
    name="Seats",
    currency="EUR",
    charges=[
        PerUnitCharge(
            code="seats",
            description="Seats",
            item_code="users",
            meter_code="seats",
            unit_price=Decimal(8),
        )
    ],
)
# Event type -> JSON values of the property its meter reads (strings and a real in a
# sum send a window to the reference aggregation).
VALUES = {
    "api.request": ("x", ["1"]),
    "llm.tokens": ("tokens", ["12", "250", "7", "2.5", '"40"']),
    "storage.snapshot": ("gb", ["10", "12.5", "3", '"200"']),
    "user.active": ("user_id", ['"a"', '"b"', '"c"', '"d"', "7"]),
    "seats": ("n", [str(n) for n in range(1, 40)]),
}


@contextlib.asynccontextmanager
async def billing_world(url: str):
    """A container on ``url`` with ``SUBSCRIPTIONS`` subscriptions on EVERY_CHARGE_PLAN:
    every 10th switches to SEATS_PLAN mid-month, every 7th starts mid-month; and their
    usage."""
    c = build_container(Settings.from_env({}, database_url=url, worker_in_process=False))
    try:
        await _seed(c)
        yield c
    finally:
        await c.aclose()


async def _seed(c) -> None:
    await seed(c, EVERY_CHARGE_PLAN)
    await c.billing.put_meter(SEATS)
    await c.billing.put_plan(SEATS_PLAN)
    rng, events = random.Random(7), []
    mid = PERIOD.first_day + timedelta(days=12)
    for i in range(SUBSCRIPTIONS - 2):
        customer_id = f"cus_r{i:03d}"
        await c.crm.put_customer(customer(customer_id))
        await c.crm.put_subscription(
            Subscription(
                id=f"sub_r{i:03d}",
                customer_id=customer_id,
                plan_id=EVERY_CHARGE_PLAN.id,
                start_date=mid if i % 7 == 3 else date(2020, 1, 1),
                amendments=[Amendment(mid, SEATS_PLAN.id)] if i % 10 == 5 else [],
            )
        )
        for n in range(rng.randrange(0, 25)):
            event_type = rng.choice(list(VALUES))
            field, values = VALUES[event_type]
            moment = PERIOD.start + timedelta(days=rng.uniform(-2, 32), microseconds=n)
            properties = f'{{"{field}": {rng.choice(values)}}}'
            events.append((customer_id, event_type, moment, properties))
    await store(c.sessions, events)


def _number(invoice: Invoice) -> int:
    return int(invoice.number.rsplit("-", 1)[1])


async def _invoices(c) -> list[Invoice]:
    found, _ = await c.invoices.list(period_start=PERIOD.first_day, limit=1000)
    return found


async def test_every_line_carries_the_reference_quantity(database_url):
    async with billing_world(database_url) as c:
        run = await c.billing_runs.run(PERIOD)
        assert (run.status, run.counts.invoiced, run.counts.held) == (
            "completed",
            SUBSCRIPTIONS,
            0,
        )
        meters = {m.code: m for m in await c.billing.list_meters()}
        by_subscription = {i.subscription_id: i for i in await _invoices(c)}
        async with c.sessions() as session:
            for subscription in await c.crm.subscriptions_active_between(
                PERIOD.first_day, PERIOD.end.date()
            ):
                expected = []
                for segment in segments(subscription, PERIOD):
                    plan = await c.billing.get_plan(segment.plan_id)
                    charged = [
                        meters[code]
                        for x in plan.charges
                        if (code := getattr(x, "meter_code", None)) in meters
                    ]
                    found = await aggregate(
                        session,
                        subscription.customer_id,
                        charged,
                        midnight(segment.start),
                        midnight(segment.end),
                    )
                    expected += [
                        (m.code, found[m.code].quantity, found[m.code].event_count) for m in charged
                    ]
                lines = by_subscription[subscription.id].lines
                assert [
                    (line.meter_code, line.quantity, line.event_count)
                    for line in lines
                    if line.meter_code
                ] == expected, subscription.id
        numbers = sorted(_number(i) for i in by_subscription.values())
        assert numbers == list(range(1, SUBSCRIPTIONS + 1))


class Races:
    """A billing port that, at the first rating, lets another runner bill ``subscription``
    (a later one of the run) first: the run meets its invoice when it writes that batch."""

    def __init__(self, c, subscription_id: str) -> None:
        self._c = c
        self._billing = c.billing
        self._subscription_id = subscription_id
        self.raced = False

    def __getattr__(self, name):
        return getattr(self._billing, name)

    async def rate(self, request):
        if not self.raced:
            self.raced = True
            async with self._c.sessions.begin() as session:
                await write_invoices(session, [(_other_runners(self._subscription_id), [None])])
        return await self._billing.rate(request)


def _other_runners(subscription_id: str) -> Invoice:
    line = InvoiceLine(
        id=new_id("il"),
        charge_code="platform",
        kind="recurring",
        description="Platform fee",
        item_code="platform",
        meter_code=None,
        quantity=Decimal(1),
        unit_price=Decimal(49),
        amount=Decimal(49),
        tax=TaxLine(rate=Decimal(0), amount=Decimal(0), jurisdiction="DE", kind="standard"),
    )
    return Invoice(
        id=new_id("inv"),
        number="OTHER-1",
        customer_id=subscription_id.replace("sub_", "cus_"),
        subscription_id=subscription_id,
        legal_entity_id="le_de",
        currency="EUR",
        period_start=PERIOD.first_day,
        period_end=PERIOD.end.date(),
        status="finalized",
        lines=[line],
        subtotal=Decimal(49),
        tax_total=Decimal(0),
        total=Decimal(49),
        run_id=None,
        correlation_id=None,
        erp_document_id=None,
        created_at=utcnow(),
    )


def _service(c, billing=None, tax=None) -> BillingRunService:
    return BillingRunService(c.sessions, c.crm, billing or c.billing, tax or c.tax, c.erp, c.usage)


async def test_a_batch_meeting_an_invoice_another_runner_wrote_bills_nothing_twice(
    database_url,
):
    async with billing_world(database_url) as c:
        racing = Races(c, "sub_r100")
        run = await _service(c, billing=racing).run(PERIOD)
        assert racing.raced
        assert (run.status, run.counts.invoiced, run.counts.skipped) == (
            "completed",
            SUBSCRIPTIONS - 1,
            1,
        )
        found = await _invoices(c)
        assert len(found) == len({i.subscription_id for i in found}) == SUBSCRIPTIONS
        [other] = [i for i in found if i.subscription_id == "sub_r100"]
        assert other.number == "OTHER-1"
        # The batch that met it was rolled back whole, numbers and all: none is lost.
        numbers = sorted(_number(i) for i in found if i.run_id == run.id)
        assert numbers == list(range(1, SUBSCRIPTIONS))


class FailsAt:
    """A tax port raising an unexpected error at its ``at``-th quote."""

    def __init__(self, tax, at: int) -> None:
        self._tax = tax
        self._at = at
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._tax, name)

    async def quote(self, request):
        self.calls += 1
        if self.calls == self._at:
            raise RuntimeError("tax engine crashed")
        return await self._tax.quote(request)


async def test_a_run_failing_mid_batch_leaves_none_of_that_batch(database_url):
    async with billing_world(database_url) as c:
        # One invoice per subscription, so one quote each: the 8th is in the third batch.
        failed = await _service(c, tax=FailsAt(c.tax, 8)).run(PERIOD)
        assert (failed.status, failed.error) == ("failed", "internal_error: RuntimeError")
        assert len(await _invoices(c)) == 6

        again = await c.billing_runs.run(PERIOD)
        assert (again.status, again.counts.invoiced, again.counts.skipped) == (
            "completed",
            SUBSCRIPTIONS - 6,
            6,
        )
        found = await _invoices(c)
        assert len({i.subscription_id for i in found}) == len(found) == SUBSCRIPTIONS
        assert sorted(_number(i) for i in found) == list(range(1, SUBSCRIPTIONS + 1))
        async with c.sessions() as session:
            count = sa.select(sa.func.count()).select_from(invoices)
            assert (await session.execute(count)).scalar() == SUBSCRIPTIONS
