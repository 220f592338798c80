"""The whole path on one gateway: usage in (canonical JSON and CloudEvents, with resends),
a billing run for the month, invoices checked line by line against amounts computed here
from the price plan, and the ERP's documents and ledger tied back to them."""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal

from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.billing import settled_run
from tests.support.seeding import EVERY_CHARGE_PLAN, moments, seed

D = Decimal
CENT = D("0.01")


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def canonical_event(
    event_id: str, source: str, event_type: str, customer_id: str, at: str, **properties
) -> dict:
    """A usage event in the canonical JSON format, ``properties`` only when given."""
    event = {
        "id": event_id,
        "source": source,
        "event_type": event_type,
        "customer_id": customer_id,
        "timestamp": at,
    }
    if properties:
        event["properties"] = properties
    return event


def cloud_event(event_id: str, source: str, type_: str, subject: str, at: str, **data) -> dict:
    """A usage event as a CloudEvent (JSON format), its properties the ``data``."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
        "subject": subject,
        "time": at,
        "data": data,
    }


async def test_usage_becomes_posted_invoices_that_tie_out(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url) as client:
        # cus_de (DE) and cus_fr (FR, reverse charge) on EVERY_CHARGE_PLAN; the meters: calls count
        # api.request, tokens sum llm.tokens, storage the max of storage.snapshot gb, users
        # the unique count of user.active user_id (tests/support/seeding.py).
        await seed(client.container, EVERY_CHARGE_PLAN)
        t = moments(period, 40)

        canonical = (
            [
                canonical_event(f"call-{i}", "api-gw", "api.request", "cus_de", t[i])
                for i in range(7)
            ]
            + [
                canonical_event(f"tok-{i}", "llm", "llm.tokens", "cus_de", t[7 + i], tokens=n)
                for i, n in enumerate([800, 900, 1500])
            ]
            + [
                canonical_event("call-0", "api-gw", "api.request", "cus_de", t[0]),  # resend
                canonical_event("fr-1", "api-gw", "api.request", "cus_fr", t[11]),
                canonical_event("ghost-1", "api-gw", "api.request", "cus_unknown", t[12]),
            ]
        )
        response = await client.post("/process/usage/v1/events", json=canonical)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (12, 1, 0)
        assert body["unmatched"] == 1
        assert body["results"][10] == {
            "index": 10,
            "id": "call-0",
            "status": "duplicate",
            "reason": None,
        }

        # The same batch again: every event is a duplicate, nothing is stored twice.
        again = (await client.post("/process/usage/v1/events", json=canonical)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 13)

        # CloudEvents: structured mode (one event) and batch mode.
        one = cloud_event("st-1", "storage", "storage.snapshot", "cus_de", t[13], gb=120.5)
        response = await client.post(
            "/process/usage/v1/events",
            content=json.dumps(one),
            headers={"content-type": "application/cloudevents+json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        batch = (
            [cloud_event("st-2", "storage", "storage.snapshot", "cus_de", t[14], gb=80)]
            + [
                cloud_event(f"u-{i}", "auth", "user.active", "cus_de", t[15 + i], user_id=u)
                for i, u in enumerate(["u1", "u2", "u3", "u1", "u4", "u5", "u6"])
            ]
            + [one]  # a resend of the structured event, inside a batch
        )
        response = await client.post(
            "/process/usage/v1/events",
            content=json.dumps(batch),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        result = response.json()
        assert (result["accepted"], result["duplicates"]) == (8, 1)

        # The unknown customer's event was kept and raised as an exception.
        exceptions = (
            await client.get("/process/exceptions/v1/", params={"kind": "unknown_customer"})
        ).json()["data"]
        assert [e["context"]["subject"] for e in exceptions] == ["cus_unknown"]

        response = await client.post(
            "/process/billing/v1/runs",
            json={"period": str(period)},
            headers={"Idempotency-Key": "run-1"},
        )
        started = response.json()
        assert response.status_code == 202 and started["status"] == "queued", response.text
        assert response.headers["location"] == f"/process/billing/v1/runs/{started['id']}"
        run = await settled_run(client, response)
        assert run["status"] == "completed"
        assert run["counts"]["invoiced"] == 2 and run["counts"]["posted"] == 2

        invoices = (
            await client.get("/process/billing/v1/invoices", params={"run_id": run["id"]})
        ).json()["data"]
        by_customer = {i["customer_id"]: i for i in invoices}

        # --- Expected amounts, computed from the plan by hand -----------------------------
        calls = D(7) * D("0.002")  # 7 distinct calls; the resend is not billed
        tokens = D(1000) * D("0.01") + D(2200) * D("0.005") + D(2)  # 3,200 tokens, tier 2 fee
        storage = D("120.5") * D("0.20")  # peak 120.5 GB falls in tier 2: all at 0.20
        users = D(math.ceil(6 / 5)) * D("10.00")  # 6 unique users, packages of 5
        usage = [cents(calls), cents(tokens), cents(storage), cents(users)]
        minimum = cents(D(100) - sum(usage))
        expected_de = {
            "platform": D("49.00"),
            "calls": usage[0],
            "tokens": usage[1],
            "storage": usage[2],
            "users": usage[3],
            "minimum": minimum,
        }
        de = by_customer["cus_de"]
        assert {line["charge_code"]: D(line["amount"]) for line in de["lines"]} == expected_de
        taxes = {code: cents(amount * D("0.19")) for code, amount in expected_de.items()}
        assert {line["charge_code"]: D(line["tax"]["amount"]) for line in de["lines"]} == taxes
        assert D(de["subtotal"]) == sum(expected_de.values()) == D("149.00")
        assert D(de["tax_total"]) == sum(taxes.values())
        assert D(de["total"]) == D(de["subtotal"]) + D(de["tax_total"])
        assert de["status"] == "posted" and de["erp_document_id"]
        lineage = {line["charge_code"]: line["event_count"] for line in de["lines"]}
        assert lineage["calls"] == 7 and lineage["users"] == 7 and lineage["storage"] == 2

        fr = by_customer["cus_fr"]  # EU B2B with a valid VAT number: reverse charge
        fr_amounts = {line["charge_code"]: D(line["amount"]) for line in fr["lines"]}
        assert fr_amounts["calls"] == cents(D("0.002"))
        assert fr_amounts["minimum"] == D("100.00") - cents(D("0.002"))
        assert all(line["tax"]["kind"] == "reverse_charge" for line in fr["lines"])
        assert D(fr["tax_total"]) == 0 and D(fr["total"]) == D("149.00")

        # --- The ERP holds exactly these documents, and its ledger balances -----------------
        erp = client.container.erp
        total_posted = Decimal(0)
        for invoice in invoices:
            document = await erp.find_document(invoice["id"])
            assert document is not None and document.id == invoice["erp_document_id"]
            assert document.total == D(invoice["total"])
            assert document.tax_total == D(invoice["tax_total"])
            assert document.correlation_id == invoice["correlation_id"]
            total_posted += document.total
        balances = await erp.account_balances()
        assert sum(balances.values()) == 0
        assert balances["1200"] == total_posted  # receivables = what was invoiced

        # --- Idempotency: replay with the key; a new key re-runs and bills nothing twice ----
        replay = await client.post(
            "/process/billing/v1/runs",
            json={"period": str(period)},
            headers={"Idempotency-Key": "run-1"},
        )
        assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == started
        rerun = await settled_run(
            client,
            await client.post(
                "/process/billing/v1/runs",
                json={"period": str(period)},
                headers={"Idempotency-Key": "run-2"},
            ),
        )
        assert rerun["counts"]["invoiced"] == 0 and rerun["counts"]["skipped"] == 2
        documents, _ = await erp.list_documents(limit=100)
        assert len(documents) == 2

        # --- The portal shows the customer its invoice ---------------------------------
        portal = (await client.get("/experience/portal/v1/customers/cus_de/invoices")).json()
        assert [i["id"] for i in portal["data"]] == [de["id"]]
        detail = (await client.get(f"/experience/portal/v1/invoices/{de['id']}")).json()
        assert D(detail["total"]) == D(de["total"])
        assert detail["customer"]["name"] == "Kunde GmbH"
        assert len(detail["lines"]) == 6
