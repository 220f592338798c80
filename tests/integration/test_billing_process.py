"""Billing-run behaviour around the edges of the happy path: usage that arrives before
its customer exists, and an ERP that commits a document but loses the answer."""

from __future__ import annotations

from decimal import Decimal

from canonical import errors
from canonical.model import Subscription
from canonical.time import Period, utcnow
from process_apis.posting.outbox import OutboxWorker, PostingPolicy
from process_apis.posting.service import PostingService
from tests.support.app import gateway_client
from tests.support.billing import settled_run
from tests.support.seeding import USAGE_PLAN, customer, moments, seed


async def test_usage_for_an_unknown_customer_is_billed_once_the_customer_exists(sqlite_url):
    period = Period.containing(utcnow())
    async with gateway_client(sqlite_url) as client:
        await seed(client.container, USAGE_PLAN)
        t = moments(period, 3)
        events = [
            {
                "id": f"late-{i}",
                "source": "api-gw",
                "event_type": "api.request",
                "customer_id": "cus_new",
                "timestamp": t[i],
            }
            for i in range(3)
        ]
        assert (await client.post("/process/usage/v1/events", json=events)).json()["unmatched"] == 3
        open_ = (await client.get("/process/exceptions/v1/", params={"status": "open"})).json()
        assert [e["context"]["subject"] for e in open_["data"]] == ["cus_new"]

        crm = client.container.crm
        await crm.put_customer(customer("cus_new", name="New GmbH"))
        await crm.put_subscription(
            Subscription(
                id="sub_new",
                customer_id="cus_new",
                plan_id=USAGE_PLAN.id,
                start_date=period.first_day,
            )
        )
        run = await settled_run(
            client,
            await client.post(
                "/process/billing/v1/runs",
                json={"period": str(period), "customer_ids": ["cus_new"]},
                headers={"Idempotency-Key": "r"},
            ),
        )
        assert (run["status"], run["counts"]["invoiced"], run["counts"]["posted"]) == (
            "completed",
            1,
            1,
        )

        invoice = (
            await client.get("/process/billing/v1/invoices", params={"customer_id": "cus_new"})
        ).json()["data"][0]
        calls = next(line for line in invoice["lines"] if line["charge_code"] == "calls")
        assert Decimal(calls["quantity"]) == 3 and calls["event_count"] == 3
        still_open = (
            await client.get("/process/exceptions/v1/", params={"status": "open"})
        ).json()["data"]
        assert still_open == []


class LosesTheAnswer:
    """An ERP that commits each document, then times out before answering (once)."""

    def __init__(self, erp) -> None:
        self._erp = erp
        self.lost = 0

    def __getattr__(self, name):
        return getattr(self._erp, name)

    async def post_invoice(self, invoice):
        document = await self._erp.post_invoice(invoice)
        if not self.lost:
            self.lost += 1
            raise errors.AmbiguousCommit("timed out after commit", system="erp")
        return document


async def test_an_ambiguous_commit_is_resolved_by_lookup_and_never_posted_twice(sqlite_url):
    period = Period.containing(utcnow())
    async with gateway_client(sqlite_url) as client:
        await seed(client.container, USAGE_PLAN)
        c = client.container
        flaky = LosesTheAnswer(c.erp)
        outbox = OutboxWorker(PostingService(c.sessions, flaky, c.crm), PostingPolicy())

        run = await c.billing_runs.run(period)
        assert (run.counts.invoiced, run.counts.pending, run.counts.posted) == (2, 2, 0)
        drained = await outbox.drain()

        assert flaky.lost == 1
        assert (drained.posted, drained.failed, drained.pending) == (2, 0, 0)
        run = await c.billing_runs.get(run.id)
        assert (run.counts.invoiced, run.counts.posted, run.counts.failed) == (2, 2, 0)
        documents, _ = await c.erp.list_documents(limit=100)
        assert len(documents) == 2
        invoices, _ = await c.invoices.list(run_id=run.id)
        assert {i.erp_document_id for i in invoices} == {d.id for d in documents}
