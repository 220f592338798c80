"""Late usage for an invoiced period: the period is rated again whole and the difference
is issued as a memo, posted to the ERP, with lineage to the late events.

Amounts are worked out by hand from the plans below, never by the code under test."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from canonical.model import GraduatedCharge, MinimumCommitment, PerUnitCharge, PricePlan, Tier
from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.seeding import moments, seed

D = Decimal
INVOICES = "/process/billing/v1/invoices"
VAT = D("0.19")  # cus_de: German customer of a German seller

# 0.10 per call up to 100 calls, 0.05 per call beyond.
TIERED = PricePlan(
    id="plan_tiered",
    code="tiered",
    name="Tiered calls",
    currency="EUR",
    charges=[
        GraduatedCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            tiers=[Tier(unit_price=D("0.10"), up_to=D(100)), Tier(unit_price=D("0.05"))],
        )
    ],
)

# 0.10 per call, at least 20.00 a month.
COMMITTED = PricePlan(
    id="plan_committed",
    code="committed",
    name="Committed calls",
    currency="EUR",
    charges=[
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=D("0.10"),
        ),
        MinimumCommitment(
            code="minimum", description="Minimum commitment", item_code="minimum", amount=D(20)
        ),
    ],
)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(D("0.01"), rounding=ROUND_HALF_UP)


async def _send(client, prefix: str, count: int, period: Period) -> None:
    stamps = moments(period, count)
    events = [
        {
            "id": f"{prefix}-{i}",
            "source": "late",
            "event_type": "api.request",
            "customer_id": "cus_de",
            "timestamp": stamps[i],
        }
        for i in range(count)
    ]
    response = await client.post("/process/usage/v1/events", json=events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == count


async def _documents(client) -> list[dict]:
    page = (await client.get(INVOICES, params={"customer_id": "cus_de"})).json()["data"]
    return sorted(page, key=lambda d: d["created_at"])


async def test_late_usage_in_a_cheaper_tier_is_billed_by_a_debit_memo(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, TIERED)
        await _send(client, "on-time", 80, period)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        [invoice] = await _documents(client)
        assert D(invoice["subtotal"]) == D("8.00")  # 80 x 0.10

        await _send(client, "late", 40, period)  # flagged for adjustment on arrival
        again = await c.billing_runs.run(period)
        assert (again.counts.invoiced, again.counts.corrected) == (0, 1)  # cus_fr: nothing

        invoice_now, memo = await _documents(client)
        assert invoice_now["id"] == invoice["id"] and invoice_now["status"] == "posted"
        # 120 calls rated whole: 100 x 0.10 + 20 x 0.05 = 11.00, so 3.00 more, not
        # 40 x 0.10 (4.00) nor 40 x 0.05 (2.00).
        assert memo["kind"] == "debit_memo" and memo["corrects_invoice_id"] == invoice["id"]
        assert memo["number"].startswith("DN-DE-")
        [line] = memo["lines"]
        assert (line["charge_code"], D(line["amount"]), D(line["quantity"])) == (
            "calls",
            D("3.00"),
            D(40),
        )
        assert D(line["tax"]["amount"]) == cents(D("11.00") * VAT) - cents(D("8.00") * VAT)
        assert D(memo["total"]) == D("3.00") + D(line["tax"]["amount"])
        assert line["event_count"] == 40

        # Posted to the ERP like an invoice; its lineage is the 40 late events.
        assert (await c.outbox.drain()).posted == 1
        document = await c.erp.find_document(memo["id"])
        assert document is not None and document.kind == "debit_memo"
        assert document.total == D(memo["total"])
        events = (
            await client.get(
                f"/process/lineage/v1/invoices/{memo['id']}/lines/{line['id']}/events",
                params={"limit": 100},
            )
        ).json()["data"]
        assert sorted(e["id"] for e in events) == sorted(f"late-{i}" for i in range(40))
        calls = next(li for li in invoice["lines"] if li["charge_code"] == "calls")
        original = (
            await client.get(
                f"/process/lineage/v1/invoices/{invoice['id']}/lines/{calls['id']}/events",
                params={"limit": 100},
            )
        ).json()["data"]
        assert len(original) == 80 and all(e["id"].startswith("on-time") for e in original)

        # Corrected once: running the period again issues nothing more.
        third = await c.billing_runs.run(period)
        assert (third.counts.invoiced, third.counts.corrected) == (0, 0)
        assert len(await _documents(client)) == 2


async def test_late_usage_filling_a_minimum_moves_revenue_between_charges(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, COMMITTED)
        await _send(client, "on-time", 80, period)
        await c.billing_runs.run(period)
        [invoice] = await _documents(client)
        lines = {li["charge_code"]: D(li["amount"]) for li in invoice["lines"]}
        assert lines == {"calls": D("8.00"), "minimum": D("12.00")}

        await _send(client, "late", 40, period)
        await c.billing_runs.run(period)
        documents = await _documents(client)
        memos = {d["kind"]: d for d in documents if d["kind"] != "invoice"}
        # 120 calls: 12.00 of usage, 8.00 of true-up: +4.00 usage, -4.00 minimum.
        debit = {li["charge_code"]: D(li["amount"]) for li in memos["debit_memo"]["lines"]}
        credit = {li["charge_code"]: D(li["amount"]) for li in memos["credit_memo"]["lines"]}
        assert debit == {"calls": D("4.00")} and credit == {"minimum": D("4.00")}
        # The customer owes what it owed: the period still comes to its minimum.
        net = (
            D(invoice["total"]) + D(memos["debit_memo"]["total"]) - D(memos["credit_memo"]["total"])
        )
        assert net == D(invoice["total"])
        assert (await c.outbox.drain()).posted == 4  # two invoices (cus_fr too), two memos
        balances = await c.erp.account_balances()
        assert sum(balances.values()) == 0


async def test_late_usage_beyond_the_minimum_credits_the_true_up_whole(sqlite_url):
    period = Period.containing(utcnow())
    async with gateway_client(sqlite_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, COMMITTED)
        await _send(client, "on-time", 80, period)
        await c.billing_runs.run(period)
        await _send(client, "late", 150, period)  # 230 calls: 23.00, above the 20.00
        await c.billing_runs.run(period)
        memos = {d["kind"]: d for d in await _documents(client) if d["kind"] != "invoice"}
        # The re-rating has no true-up line any more: the 12.00 billed is credited.
        debit = {li["charge_code"]: D(li["amount"]) for li in memos["debit_memo"]["lines"]}
        credit = {li["charge_code"]: D(li["amount"]) for li in memos["credit_memo"]["lines"]}
        assert debit == {"calls": D("15.00")} and credit == {"minimum": D("12.00")}
