"""Revenue schedules: a posted invoice's flat fee is recognised ratably over the period
and its usage on the days it was consumed, booked in the ERP as daily journals against
the contract balance; recognising again books nothing twice; a journal the ERP refuses
becomes an exception finance can retry; a void nets revenue to zero, on every day its
credit memo reverses.

Amounts are worked out in the test from the day counts, never by the code under test."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa

from canonical.model import FlatCharge, PerUnitCharge, PricePlan
from canonical.time import Period, utcnow
from process_apis.revenue.recognizer import RevenueRecognizer
from process_apis.revenue.table import revenue_schedules
from tests.support.app import gateway_client
from tests.support.seeding import moments, seed

D = Decimal
REVENUE = "/process/revenue/v1"
EXCEPTIONS = "/process/exceptions/v1"

PLAN = PricePlan(
    id="plan_rev",
    code="rev",
    name="Revenue plan",
    currency="EUR",
    charges=[
        FlatCharge(code="platform", description="Platform", item_code="platform", amount=D(30)),
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=D("0.10"),
        ),
    ],
)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(D("0.01"), rounding=ROUND_HALF_UP)


def _at(day, hour: int) -> str:
    return datetime.combine(day, time(hour), tzinfo=UTC).isoformat()


async def _journals(client, **params) -> list[dict]:
    response = await client.get(f"{REVENUE}/journals", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _per_item(journals: list[dict]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for journal in journals:
        for line in journal["lines"]:
            totals[line["item_code"]] += D(line["amount"])
    return dict(totals)


async def test_flat_fees_ratably_usage_at_consumption_booked_once(database_url):
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))  # last month
    days = period.days
    first, last = period.first_day, period.end.date() - timedelta(days=1)
    async with gateway_client(
        database_url, worker_in_process=False, event_max_age_days=70
    ) as client:
        c = client.container
        await seed(c, PLAN)
        # cus_de: 3 calls on the 2nd, 1 on the 5th (0.40 EUR); cus_fr makes none.
        events = [
            {
                "id": f"e{i}",
                "source": "test",
                "event_type": "api.request",
                "customer_id": "cus_de",
                "timestamp": _at(first + timedelta(days=day), 9 + i),
            }
            for i, day in enumerate((1, 1, 1, 4))
        ]
        sent = await client.post("/process/usage/v1/events", json=events)
        assert sent.status_code == 200 and sent.json()["accepted"] == 4, sent.text
        await c.billing_runs.run(period)
        assert (await c.outbox.drain()).posted == 2
        invoice = {
            i["customer_id"]: i
            for i in (await client.get("/process/billing/v1/invoices")).json()["data"]
        }["cus_de"]

        # Recognised through the 10th: ten daily journals, nothing deferred yet.
        tenth = first + timedelta(days=9)
        done = await c.revenue_recognizer.recognise(tenth)
        assert done == {"scheduled": 2, "journals": 10, "posted": 10, "failed": 0}
        booked = await _journals(client, status="posted")
        assert sorted(j["posting_date"] for j in booked) == [
            (first + timedelta(days=k)).isoformat() for k in range(10)
        ]
        assert _per_item(booked) == {
            "platform": 2 * cents(D(30) * 10 / days),
            "calls": D("0.40"),
        }

        # The schedule of cus_de's invoice, day by day.
        schedule = (await client.get(f"{REVENUE}/invoices/{invoice['id']}/schedule")).json()
        assert schedule["posting_date"] == last.isoformat()
        platform, calls = schedule["lines"]
        assert (platform["method"], calls["method"]) == ("ratable", "consumption")
        expected = [
            cents(D(30) * k / days) - cents(D(30) * (k - 1) / days) for k in range(1, days + 1)
        ]
        expected[-1] -= 30  # the invoice's revenue is deferred on its posting date
        assert [D(e["amount"]) for e in platform["entries"]] == expected
        assert [e["booked"] for e in platform["entries"]] == [True] * 10 + [False] * (days - 10)
        assert D(platform["recognised"]) == cents(D(30) * 10 / days)
        assert [(e["on"], D(e["amount"])) for e in calls["entries"]] == [
            ((first + timedelta(days=1)).isoformat(), D("0.30")),
            ((first + timedelta(days=4)).isoformat(), D("0.10")),
            (last.isoformat(), D("-0.40")),
        ]
        assert D(calls["recognised"]) == D("0.40")

        # Through the last day: the rest, with the deferral; then nothing more, ever.
        done = await c.revenue_recognizer.recognise(last + timedelta(days=3))
        assert done["journals"] == days - 10 and done["posted"] == days - 10
        again = await c.revenue_recognizer.recognise(last + timedelta(days=3))
        assert again == {"scheduled": 0, "journals": 0, "posted": 0, "failed": 0}
        booked = await _journals(client)
        assert len(booked) == days and {j["status"] for j in booked} == {"posted"}
        # Recognised (60 + 0.40) minus deferred (60 + 0.40): the journals net to zero...
        assert _per_item(booked) == {"platform": D(0), "calls": D(0)}
        # ...and the ledger holds the invoices' revenue, with the contract balance cleared.
        balances = await c.erp.account_balances("le_de", "EUR")
        assert balances["4100"] == D(-60) and balances["4000"] == D("-0.40")
        assert balances.get("2400", D(0)) == 0
        schedule = (await client.get(f"{REVENUE}/invoices/{invoice['id']}/schedule")).json()
        assert [D(line["recognised"]) for line in schedule["lines"]] == [D(30), D("0.40")]

        # A void reverses the invoice on the day of the void: revenue nets to zero and the
        # credit memo's schedule books nothing more (recognised there and then).
        voided = await client.post(
            f"/process/billing/v1/invoices/{invoice['id']}/void",
            json={"reason": "duplicate contract"},
            headers={"Idempotency-Key": "void-1"},
        )
        assert voided.status_code == 200, voided.text
        await c.outbox.drain()
        done = await c.revenue_recognizer.recognise(utcnow().date())
        assert done["scheduled"] == 1 and done["journals"] == 0
        balances = await c.erp.account_balances("le_de", "EUR")
        assert balances["4100"] == D(-30) and balances["4000"] == 0


async def test_a_refused_journal_is_an_exception_finance_retries(database_url):
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))
    last = period.end.date() - timedelta(days=1)
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, PLAN)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        await c.erp.set_period_status("le_de", str(period), "closed")

        done = await c.revenue_recognizer.recognise(last)
        assert done["journals"] == period.days and done["failed"] == period.days
        failed = (await client.get(EXCEPTIONS, params={"kind": "revenue_posting_failed"})).json()
        assert len(failed["data"]) == period.days
        exception = failed["data"][0]
        assert exception["context"]["error_code"] == "period_closed"
        assert exception["context"]["legal_entity_id"] == "le_de"

        await c.erp.set_period_status("le_de", str(period), "open")
        retried = await client.post(
            f"{EXCEPTIONS}/{exception['id']}/retry", headers={"Idempotency-Key": "retry-1"}
        )
        assert retried.status_code == 200, retried.text
        assert (await c.revenue_recognizer.recognise(last))["posted"] == 1
        closed = (await client.get(f"{EXCEPTIONS}/{exception['id']}")).json()
        assert closed["status"] == "resolved"
        journal = exception["context"]["journal_id"]
        assert [j["status"] for j in await _journals(client) if j["id"] == journal] == ["posted"]


async def test_two_workers_schedule_and_book_each_line_once(database_url):
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))
    last = period.end.date() - timedelta(days=1)
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, PLAN)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        other = RevenueRecognizer(c.sessions, c.erp, c.billing)
        await asyncio.gather(c.revenue_recognizer.schedule(), other.schedule())
        await asyncio.gather(c.revenue_recognizer.book(last), other.book(last))
        await c.revenue_recognizer.post()
        async with c.sessions() as session:
            schedules = await session.scalar(
                sa.select(sa.func.count()).select_from(revenue_schedules)
            )
        assert schedules == 4  # two invoices of two lines each
        # Every day booked once: the journals net to zero per item, 2400 is cleared.
        assert _per_item(await _journals(client)) == {"platform": D(0)}
        balances = await c.erp.account_balances("le_de", "EUR")
        assert balances["4100"] == D(-60) and balances.get("2400", D(0)) == 0


async def test_a_void_within_its_month_reverses_usage_on_the_days_it_was_consumed(database_url):
    """The credit memo reversing a void consumes as its invoice did: on each service day
    the two net to zero, not only over the month."""
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, PLAN)
        stamps = moments(period, 4)
        events = [
            {
                "id": f"v{i}",
                "source": "test",
                "event_type": "api.request",
                "customer_id": "cus_de",
                "timestamp": stamp,
            }
            for i, stamp in enumerate(stamps)
        ]
        sent = await client.post("/process/usage/v1/events", json=events)
        assert sent.status_code == 200 and sent.json()["accepted"] == 4, sent.text
        await c.billing_runs.run(period)
        await c.outbox.drain()
        invoice = {
            i["customer_id"]: i
            for i in (await client.get("/process/billing/v1/invoices")).json()["data"]
        }["cus_de"]
        voided = await client.post(
            f"/process/billing/v1/invoices/{invoice['id']}/void",
            json={"reason": "duplicate contract"},
            headers={"Idempotency-Key": "void-in-month"},
        )
        assert voided.status_code == 200, voided.text
        memo = voided.json()["credit_memo"]
        await c.outbox.drain()
        await c.revenue_recognizer.schedule()

        async def calls(document_id: str) -> dict[str, Decimal]:
            schedule = (await client.get(f"{REVENUE}/invoices/{document_id}/schedule")).json()
            [line] = [li for li in schedule["lines"] if li["item_code"] == "calls"]
            assert line["method"] == "consumption"
            return {e["on"]: D(e["amount"]) for e in line["entries"]}

        # 0.10 a call, on the days the calls were made; the posting dates (the period's
        # last day, the day of the void) also hold the deferrals.
        posted_on = {
            (period.end - timedelta(days=1)).date().isoformat(),
            datetime.fromisoformat(memo["created_at"]).date().isoformat(),
        }
        per_day = Counter(datetime.fromisoformat(stamp).date().isoformat() for stamp in stamps)
        consumed = {day: D("0.10") * n for day, n in per_day.items() if day not in posted_on}
        invoiced, reversed_ = await calls(invoice["id"]), await calls(memo["id"])
        assert {day: a for day, a in invoiced.items() if day not in posted_on} == consumed
        assert {day: -a for day, a in reversed_.items() if day not in posted_on} == consumed
