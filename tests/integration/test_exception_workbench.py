"""Finance works exceptions through the Process API: fix the cause, retry the work (the
exception closes when the work goes through), or resolve it by hand with a note. Both
need an Idempotency-Key; a resolved exception cannot be resolved or retried again."""

from __future__ import annotations

import msgspec

from canonical.model import Subscription
from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, seed

EXCEPTIONS = "/process/exceptions/v1"


async def _open(client, kind: str) -> list[dict]:
    response = await client.get(f"{EXCEPTIONS}/", params={"kind": kind, "status": "open"})
    return response.json()["data"]


async def test_a_failed_posting_is_retried_once_the_period_is_open(database_url):
    period = str(Period.containing(utcnow()))
    # The background work is done here, step by step.
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.erp.set_period_status("le_de", period, "closed")
        run = await c.billing_runs.run(Period.parse(period))
        await c.outbox.drain()
        run = (await client.get(f"/process/billing/v1/runs/{run.id}")).json()
        assert (run["counts"]["invoiced"], run["counts"]["failed"]) == (2, 2)
        failed = await _open(client, "posting_failed")
        assert len(failed) == 2

        # Retrying before the cause is fixed fails again, and says why.
        first = failed[0]
        again = await client.post(
            f"{EXCEPTIONS}/{first['id']}/retry", headers={"Idempotency-Key": "retry-1"}
        )
        assert again.status_code == 200, again.text
        await c.outbox.drain()
        still = (await client.get(f"{EXCEPTIONS}/{first['id']}")).json()
        assert still["status"] == "open" and still["context"]["occurrences"] == 2

        # Finance reopens the period in the ERP and retries: the documents go through.
        await c.erp.set_period_status("le_de", period, "open")
        for n, exception in enumerate(failed):
            retried = await client.post(
                f"{EXCEPTIONS}/{exception['id']}/retry", headers={"Idempotency-Key": f"fix-{n}"}
            )
            assert retried.status_code == 200, retried.text
        await c.outbox.drain()
        assert await _open(client, "posting_failed") == []
        closed = (await client.get(f"{EXCEPTIONS}/{first['id']}")).json()
        assert closed["status"] == "resolved" and closed["resolved_by"] is None
        run = (await client.get(f"/process/billing/v1/runs/{run['id']}")).json()
        assert (run["counts"]["posted"], run["counts"]["failed"]) == (2, 0)
        documents, _ = await c.erp.list_documents(limit=10)
        assert len(documents) == 2

        # A resolved exception has nothing left to retry.
        assert_problem(
            await client.post(
                f"{EXCEPTIONS}/{first['id']}/retry", headers={"Idempotency-Key": "late"}
            ),
            409,
            "invalid_transition",
        )


async def test_resolve_by_hand_records_who_and_why(database_url):
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        await client.post(
            "/process/usage/v1/events",
            json=[
                {"id": "e1", "source": "s", "event_type": "gpu.seconds", "customer_id": "cus_de"}
            ],
        )
        [exception] = await _open(client, "unknown_event_type")
        url = f"{EXCEPTIONS}/{exception['id']}"

        assert_problem(await client.post(f"{url}/resolve", json={"note": "x"}), 400)  # no key
        assert_problem(
            await client.post(
                f"{url}/resolve", json={"note": ""}, headers={"Idempotency-Key": "a"}
            ),
            400,
        )
        # Retrying an unknown event type rematches: no meter yet, so it stays open.
        retried = await client.post(f"{url}/retry", headers={"Idempotency-Key": "rm"})
        assert retried.json()["status"] == "open"

        note = "gpu.seconds is billed by the legacy system; not a Meterline meter"
        resolved = await client.post(
            f"{url}/resolve", json={"note": note}, headers={"Idempotency-Key": "res-1"}
        )
        assert resolved.status_code == 200, resolved.text
        body = resolved.json()
        assert body["status"] == "resolved" and body["resolution"] == note
        # By the OAuth client that called (the test's operator client).
        registered = [c.client_id for c in await client.container.clients.list()]
        assert body["resolved_by"] in registered
        assert body["resolved_at"] is not None
        # Both actions are in the audit log, by that client, with their correlation IDs.
        entries, _ = await client.container.audit.list(
            subject_type="exception", subject_id=exception["id"]
        )
        assert [(e.action, e.actor) for e in entries] == [
            ("exception.retried", body["resolved_by"]),
            ("exception.resolved", body["resolved_by"]),
        ]
        assert entries[1].data == {"note": note}
        assert entries[1].correlation_id == resolved.headers["x-correlation-id"]
        replay = await client.post(
            f"{url}/resolve", json={"note": note}, headers={"Idempotency-Key": "res-1"}
        )
        assert replay.headers["idempotent-replayed"] == "true" and replay.json() == body
        assert_problem(
            await client.post(
                f"{url}/resolve", json={"note": note}, headers={"Idempotency-Key": "res-2"}
            ),
            409,
            "invalid_transition",
        )
        assert_problem(
            await client.post(
                f"{EXCEPTIONS}/exc_nope/resolve",
                json={"note": note},
                headers={"Idempotency-Key": "n"},
            ),
            404,
        )


async def test_a_held_billing_is_retried_by_a_run_for_that_customer(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        # cus_fr's subscription points at a plan that does not exist yet: held.
        await c.crm.put_subscription(
            Subscription(
                id="sub_cus_fr",
                customer_id="cus_fr",
                plan_id="plan_later",
                start_date=period.first_day,
            )
        )
        run = msgspec.to_builtins(await c.billing_runs.run(period))
        assert (run["counts"]["invoiced"], run["counts"]["held"]) == (1, 1)
        [held] = await _open(client, "billing_failed")
        assert held["context"]["customer_id"] == "cus_fr"

        await c.billing.put_plan(msgspec.structs.replace(USAGE_PLAN, id="plan_later", code="later"))
        retried = await client.post(
            f"{EXCEPTIONS}/{held['id']}/retry", headers={"Idempotency-Key": "again"}
        )
        assert retried.status_code == 200, retried.text
        runs = (await client.get("/process/billing/v1/runs")).json()["data"]
        follow_up = next(r for r in runs if r["id"] != run["id"])
        assert follow_up["customer_ids"] == ["cus_fr"]
        assert await c.billing_runner.run_pending() == 1
        follow_up = (await client.get(f"/process/billing/v1/runs/{follow_up['id']}")).json()
        assert follow_up["counts"]["invoiced"] == 1, follow_up["counts"]
        assert (await client.get(f"{EXCEPTIONS}/{held['id']}")).json()["status"] == "resolved"
        invoices = (
            await client.get("/process/billing/v1/invoices", params={"customer_id": "cus_fr"})
        ).json()["data"]
        assert len(invoices) == 1
