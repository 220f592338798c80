"""The grace window: a period's invoices stay drafts for a while after it ends; late
events in the window are ordinary events that the next run of the period bills by
updating the draft (no memo); nothing reaches the ERP until the window is over and a run
finalizes the drafts, which the runner starts by itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from canonical.time import Period, utcnow
from process_apis.billing import drafts
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, moments, seed

INVOICES = "/process/billing/v1/invoices"
PORTAL = "/experience/portal/v1"


async def _calls(client, prefix: str, count: int, period: Period) -> dict:
    events = [
        {
            "id": f"{prefix}-{i}",
            "source": "grace",
            "event_type": "api.request",
            "customer_id": "cus_de",
            "timestamp": stamp,
        }
        for i, stamp in enumerate(moments(period, count))
    ]
    response = await client.post("/process/usage/v1/events", json=events)
    assert response.status_code == 200, response.text
    return response.json()


async def _documents(client) -> list[dict]:
    page = await client.get(INVOICES, params={"customer_id": "cus_de"})
    return page.json()["data"]


async def test_late_events_in_the_window_update_the_draft_then_it_is_finalized(
    database_url, monkeypatch
):
    period = Period.containing(utcnow())
    # The window ends a day after the period: the current period's is open.
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await _calls(client, "on-time", 10, period)
        run = await c.billing_runs.run(period)
        assert run.status == "completed" and run.counts.invoiced == 2
        [draft] = await _documents(client)
        assert draft["status"] == "draft"
        # 49 platform + 10 calls at 0.002, and 19 % VAT.
        assert Decimal(draft["subtotal"]) == Decimal("49.02")
        assert (await c.outbox.drain()).posted == 0  # a draft never reaches the ERP
        assert (await client.get(f"{PORTAL}/customers/cus_de/invoices")).json()["data"] == []
        # Reconciled in the window: the drafts bill the events, and nothing is due in the
        # ERP yet (neither pending nor a variance).
        report = await c.reconciliation.reconcile(period)
        assert report.status == "balanced", report.variances
        assert report.summary.documents == report.summary.pending_documents == 0

        # Late in the window: an ordinary event, not flagged for a memo...
        answer = await _calls(client, "late", 5, period)
        assert answer["accepted"] == 5 and {r["reason"] for r in answer["results"]} == {None}
        # ...billed by the draft itself when the period runs again.
        rerun = await c.billing_runs.run(period)
        assert rerun.counts.invoiced == 1 and rerun.counts.corrected == 0
        [updated] = await _documents(client)
        assert (updated["id"], updated["number"]) == (draft["id"], draft["number"])
        assert updated["status"] == "draft"
        assert Decimal(updated["subtotal"]) == Decimal("49.03")
        assert Decimal(updated["total"]) == Decimal("58.35")  # 49.03 + 9.32 VAT
        # Nothing new: a run changes nothing.
        assert (await c.billing_runs.run(period)).counts.invoiced == 0
        entries, _ = await c.audit.list(subject_type="invoice", subject_id=draft["id"])
        assert [e.action for e in entries] == ["invoice.draft", "invoice.draft_updated"]

        # Once the window is over the runner finalizes it, and the outbox posts it.
        assert await c.billing_runs.start_finalizing() == []
        later = utcnow() + timedelta(days=40)
        monkeypatch.setattr(drafts, "utcnow", lambda: later)
        [finalizing] = await c.billing_runs.start_finalizing()
        assert finalizing.period == str(period)
        assert await c.billing_runs.start_finalizing() == []  # queued already
        assert await c.billing_runner.run_pending() == 1
        [final] = await _documents(client)
        assert final["status"] == "finalized" and final["number"] == draft["number"]
        # Issued when it was finalized, not when its draft was created, days before:
        # what the customer reads.
        [listed] = (await client.get(f"{PORTAL}/customers/cus_de/invoices")).json()["data"]
        issued = (await client.get(f"{PORTAL}/invoices/{final['id']}")).json()
        assert (listed["id"], issued["id"]) == (final["id"], final["id"])
        assert datetime.fromisoformat(listed["issued_at"]) == later
        assert datetime.fromisoformat(issued["issued_at"]) == later
        assert (await c.outbox.drain()).posted == 2
        [posted] = await _documents(client)
        assert posted["status"] == "posted" and Decimal(posted["total"]) == Decimal("58.35")

        # After the window a late event is late: a memo corrects the invoice.
        answer = await _calls(client, "later", 1, period)
        assert answer["results"][0]["reason"] == "period_invoiced"
