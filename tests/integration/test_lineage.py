"""Lineage: a lookup by correlation ID returns the whole chain (events → invoice → outbox
→ ERP document, and the run's own records), and an invoice line leads to its source
events, a page at a time."""

from __future__ import annotations

from decimal import Decimal

from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, moments, seed

LINEAGE = "/process/lineage/v1"


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
