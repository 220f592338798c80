"""Lineage: a lookup by correlation ID returns the whole chain (events → invoice → outbox
→ ERP document, and the run's own records), and an invoice line leads to its source
events, a page at a time: exactly those its quantity was measured from (its own service
window; a void's credit memo, the voided invoice's; a late-usage memo, the late ones)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from canonical.model import Amendment, PerUnitCharge, PricePlan, Subscription
from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.ingest import event, on, send
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, customer, moments, seed

LINEAGE = "/process/lineage/v1"
INVOICES = "/process/billing/v1/invoices"

# 0.01 EUR per token (the ``tokens`` meter sums the events' ``tokens``).
TOKENS_PLAN = PricePlan(
    id="plan_tokens",
    code="tokens",
    name="Tokens",
    currency="EUR",
    charges=[
        PerUnitCharge(
            code="tokens",
            description="Tokens",
            item_code="tokens",
            meter_code="tokens",
            unit_price=Decimal("0.01"),
        )
    ],
)
# USAGE_PLAN's calls at another price: the plan a subscription is amended to.
DEARER_PLAN = PricePlan(
    id="plan_dearer",
    code="dearer",
    name="Dearer calls",
    currency="EUR",
    charges=[
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=Decimal("0.005"),
        )
    ],
)


async def _documents(client, customer_id: str) -> list[dict]:
    page = await client.get(INVOICES, params={"customer_id": customer_id, "limit": 100})
    return sorted(page.json()["data"], key=lambda d: d["created_at"])


async def _behind(client, document: dict, line: dict) -> list[str]:
    """The ids of the events behind ``line``, every page read."""
    url = f"{LINEAGE}/invoices/{document['id']}/lines/{line['id']}/events"
    ids, params = [], {"limit": 2}
    while True:
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            return ids
        params["starting_after"] = page["data"][-1]["seq"]


def _last_month() -> Period:
    return Period.containing(utcnow().replace(day=1) - timedelta(days=1))


async def test_trace_by_correlation_follows_events_to_the_erp_document(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        stamps = moments(period, 5)
        events = [
            {
                "id": f"ln-{i}",
                "source": "lineage",
                "event_type": "api.request",
                "customer_id": "cus_de",
                "timestamp": stamps[i],
            }
            for i in range(5)
        ]
        sent = await client.post(
            "/process/usage/v1/events", json=events, headers={"X-Correlation-ID": "ingest-42"}
        )
        assert sent.status_code == 200, sent.text
        run = await client.post(
            "/process/billing/v1/runs",
            json={"period": str(period)},
            headers={"Idempotency-Key": "ln-run", "X-Correlation-ID": "run-42"},
        )
        assert run.status_code == 202
        await c.billing_runner.run_pending()
        await c.outbox.drain()

        trace = (await client.get(f"{LINEAGE}/correlations/ingest-42")).json()
        assert trace["event_count"] == 5
        assert [e["id"] for e in trace["events"]["data"]] == [f"ln-{i}" for i in range(5)]
        [billed] = trace["billed_in"]["data"]
        assert billed["customer_id"] == "cus_de" and billed["status"] == "posted"
        assert billed["correlation_id"] == "run-42"
        [posting] = trace["postings"]["data"]
        assert posting["invoice_id"] == billed["id"] and posting["status"] == "posted"
        [document] = trace["erp_documents"]["data"]
        assert document["external_ref"] == billed["id"]
        assert document["id"] == billed["erp_document_id"]
        assert Decimal(document["total"]) == Decimal(billed["total"])

        by_run = (await client.get(f"{LINEAGE}/correlations/run-42")).json()
        assert [r["id"] for r in by_run["runs"]["data"]] == [run.json()["id"]]
        assert len(by_run["documents"]["data"]) == 2  # both customers' invoices
        assert len(by_run["erp_documents"]["data"]) == 2
        assert by_run["event_count"] == 0
        actions = {entry["action"] for entry in by_run["audit"]["data"]}
        assert "invoice.posted" in actions

        nothing = (await client.get(f"{LINEAGE}/correlations/unknown-1")).json()
        assert nothing["event_count"] == 0 and nothing["documents"]["data"] == []
        assert_problem(await client.get(f"{LINEAGE}/correlations/bad%20id"), 400)


async def test_an_invoice_line_leads_to_its_source_events(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        stamps = moments(period, 7)
        events = [
            {
                "id": f"src-{i}",
                "source": "lineage",
                "event_type": "api.request",
                "customer_id": "cus_de" if i < 5 else "cus_fr",
                "timestamp": stamps[i],
            }
            for i in range(7)
        ]
        await client.post("/process/usage/v1/events", json=events)
        await c.billing_runs.run(period)
        invoices = (
            await client.get("/process/billing/v1/invoices", params={"customer_id": "cus_de"})
        ).json()["data"]
        [invoice] = invoices
        calls = next(line for line in invoice["lines"] if line["charge_code"] == "calls")
        flat = next(line for line in invoice["lines"] if line["charge_code"] == "platform")
        url = f"{LINEAGE}/invoices/{invoice['id']}/lines/{calls['id']}/events"

        first = (await client.get(url, params={"limit": 3})).json()
        assert [e["id"] for e in first["data"]] == ["src-0", "src-1", "src-2"]
        assert first["has_more"] is True
        rest = (
            await client.get(url, params={"limit": 3, "starting_after": first["data"][-1]["seq"]})
        ).json()
        assert [e["id"] for e in rest["data"]] == ["src-3", "src-4"]
        assert rest["has_more"] is False
        # As many events as the line says stand behind it.
        assert calls["event_count"] == 5

        none = await client.get(f"{LINEAGE}/invoices/{invoice['id']}/lines/{flat['id']}/events")
        assert none.json() == {"object": "list", "data": [], "has_more": False}
        assert_problem(
            await client.get(f"{LINEAGE}/invoices/{invoice['id']}/lines/il_x/events"), 404
        )


async def test_a_void_s_credit_memo_leads_to_the_voided_invoice_s_events(database_url):
    """The void's credit memo bills the voided invoice's events; a late-usage credit memo
    of the same invoice, its late event; neither lists an event that came after the void."""
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, TOKENS_PLAN)
        stamps = moments(period, 7)
        on_time = [f"tok-{i}" for i in range(5)]
        await send(
            client,
            [
                event(eid, "cus_de", "llm.tokens", stamps[i], tokens=10)
                for i, eid in enumerate(on_time)
            ],
        )
        await c.billing_runs.run(period)
        await c.outbox.drain()
        [invoice] = await _documents(client, "cus_de")
        [line] = invoice["lines"]
        assert (Decimal(line["quantity"]), line["event_count"]) == (50, 5)

        # A late event taking 20 tokens back: the period re-rated whole bills 30 tokens,
        # so a late-usage credit memo of 0.20 corrects the invoice.
        await send(client, [event("late", "cus_de", "llm.tokens", stamps[5], tokens=-20)])
        await c.billing_runs.run(period)
        await c.outbox.drain()
        _, correction = await _documents(client, "cus_de")
        assert (correction["kind"], correction["corrects_invoice_id"]) == (
            "credit_memo",
            invoice["id"],
        )

        voided = await client.post(
            f"{INVOICES}/{invoice['id']}/void",
            json={"reason": "wrong contract"},
            headers={"Idempotency-Key": "void-tokens"},
        )
        assert voided.status_code == 200, voided.text
        reversal = voided.json()["credit_memo"]
        assert reversal["corrects_invoice_id"] == invoice["id"]
        # With no invoice standing for the period, this one arrives on time: nobody bills it.
        await send(client, [event("after-void", "cus_de", "llm.tokens", stamps[6], tokens=7)])

        [reversed_line] = reversal["lines"]
        behind_reversal = await _behind(client, reversal, reversed_line)
        assert behind_reversal == on_time
        assert len(behind_reversal) == reversed_line["event_count"] == 5
        assert await _behind(client, invoice, line) == on_time
        [corrected_line] = correction["lines"]
        assert await _behind(client, correction, corrected_line) == ["late"]


async def test_each_line_of_an_amended_month_lists_its_own_window_s_events(database_url):
    period = _last_month()
    first = period.first_day
    mid = first + timedelta(days=14)  # the 15th: the amendment takes effect
    async with gateway_client(
        database_url, worker_in_process=False, event_max_age_days=70
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing.put_plan(DEARER_PLAN)
        await c.crm.put_subscription(
            Subscription(
                id="sub_cus_de",
                customer_id="cus_de",
                plan_id=USAGE_PLAN.id,
                start_date=date(2020, 1, 1),
                amendments=[Amendment(effective_from=mid, plan_id=DEARER_PLAN.id)],
            )
        )
        days = {"before": (1, 8, 13), "after": (14, 19, 27)}  # days after the 1st
        await send(
            client,
            [
                event(f"{half}-{k}", "cus_de", "api.request", on(first + timedelta(days=d), 9))
                for half, offsets in days.items()
                for k, d in enumerate(offsets)
            ]
            + [event("last-hour", "cus_de", "api.request", on(mid - timedelta(days=1), 23))]
            + [event("fr", "cus_fr", "api.request", on(first + timedelta(days=20), 9))],
        )
        await c.billing_runs.run(period)
        [invoice] = await _documents(client, "cus_de")
        calls = sorted(
            (li for li in invoice["lines"] if li["charge_code"] == "calls"),
            key=lambda li: li["service_start"],
        )
        assert [(li["service_start"], li["service_end"]) for li in calls] == [
            (first.isoformat(), mid.isoformat()),
            (mid.isoformat(), period.end.date().isoformat()),
        ]
        early, late = calls
        assert await _behind(client, invoice, early) == [
            "before-0",
            "before-1",
            "before-2",
            "last-hour",
        ]
        assert early["event_count"] == 4
        assert await _behind(client, invoice, late) == ["after-0", "after-1", "after-2"]
        assert late["event_count"] == 3


async def test_a_subscription_starting_mid_month_lists_no_event_before_its_start(database_url):
    """Its events arrived before the customer existed (stored unmatched): billed all the
    same once it does, and listed; those before its start are neither."""
    period = _last_month()
    first = period.first_day
    start = first + timedelta(days=14)
    async with gateway_client(
        database_url, worker_in_process=False, event_max_age_days=70
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await send(
            client,
            [
                event(f"new-{d}", "cus_new", "api.request", on(first + timedelta(days=d), 10))
                for d in (2, 9, 13, 14, 20)
            ],
        )
        await c.crm.put_customer(customer("cus_new"))
        await c.crm.put_subscription(
            Subscription(
                id="sub_new", customer_id="cus_new", plan_id=USAGE_PLAN.id, start_date=start
            )
        )
        await c.billing_runs.run(period)
        [invoice] = await _documents(client, "cus_new")
        calls = next(li for li in invoice["lines"] if li["charge_code"] == "calls")
        assert calls["service_start"] == start.isoformat()
        assert (Decimal(calls["quantity"]), calls["event_count"]) == (2, 2)
        assert await _behind(client, invoice, calls) == ["new-14", "new-20"]


async def test_the_cursor_is_one_of_the_line_s_own_events(database_url):
    """Any other seq, another customer's above all, is refused as unknown would be: the
    cursor tells nothing of which events exist."""
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        stamps = moments(period, 3)
        await send(
            client,
            [
                event("de-0", "cus_de", "api.request", stamps[0]),
                event("fr-0", "cus_fr", "api.request", stamps[1]),
                event("de-tokens", "cus_de", "llm.tokens", stamps[2], tokens=5),
            ],
        )
        await c.billing_runs.run(period)
        [de] = await _documents(client, "cus_de")
        [fr] = await _documents(client, "cus_fr")
        de_calls = next(li for li in de["lines"] if li["charge_code"] == "calls")
        fr_calls = next(li for li in fr["lines"] if li["charge_code"] == "calls")
        url = f"{LINEAGE}/invoices/{de['id']}/lines/{de_calls['id']}/events"
        [own] = (await client.get(url)).json()["data"]
        fr_url = f"{LINEAGE}/invoices/{fr['id']}/lines/{fr_calls['id']}/events"
        [foreign] = (await client.get(fr_url)).json()["data"]
        assert foreign["id"] == "fr-0"
        trace = (await client.get(f"{LINEAGE}/correlations/{own['correlation_id']}")).json()
        [other_type] = [e for e in trace["events"]["data"] if e["id"] == "de-tokens"]

        for seq in (foreign["seq"], other_type["seq"], 999_999):
            assert_problem(
                await client.get(url, params={"starting_after": seq}), 400, "invalid_cursor"
            )
        after_own = await client.get(url, params={"starting_after": own["seq"]})
        assert after_own.json() == {"object": "list", "data": [], "has_more": False}
