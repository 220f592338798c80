"""Billing runs as finance relies on them: asynchronous, resumable after a crash without
billing anything twice, a no-op for what is already billed, and a run that cannot go on
ends ``failed`` with the reason instead of staying ``running``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from canonical.time import Period, utcnow
from process_apis.billing.runner import BillingRunner
from process_apis.billing.runs import BillingRunService
from process_apis.tables import invoice_lines, invoices
from tests.support.app import gateway_client
from tests.support.billing import settled_run
from tests.support.seeding import USAGE_PLAN, seed, seed_many

RUNS = "/process/billing/v1/runs"
CUSTOMERS = 12


async def _seed_many(container) -> None:
    await seed_many(container, USAGE_PLAN, CUSTOMERS)


class Stalls:
    """A billing port whose rating stops at the ``at``-th call until ``release`` is set:
    a runner that hangs (or dies) mid-run."""

    def __init__(self, billing, at: int) -> None:
        self._billing = billing
        self._at = at
        self.calls = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self._billing, name)

    async def rate(self, request):
        self.calls += 1
        if self.calls == self._at:
            self.stalled.set()
            await self.release.wait()
        return await self._billing.rate(request)


class Breaks:
    """A billing port whose rating raises an unexpected error."""

    def __init__(self, billing) -> None:
        self._billing = billing

    def __getattr__(self, name):
        return getattr(self._billing, name)

    async def rate(self, request):
        raise RuntimeError("rating engine crashed")


def _service(container, billing, lease: float) -> BillingRunService:
    c = container
    return BillingRunService(
        c.sessions, c.crm, billing, c.tax, c.erp, c.usage, lease=timedelta(seconds=lease)
    )


async def _documents(container) -> tuple[int, int, int]:
    """Invoices, distinct subscriptions among them, and invoice lines."""
    async with container.sessions() as session:
        count = (await session.execute(sa.select(sa.func.count()).select_from(invoices))).scalar()
        distinct = (
            await session.execute(sa.select(sa.func.count(sa.distinct(invoices.c.subscription_id))))
        ).scalar()
        lines = (
            await session.execute(sa.select(sa.func.count()).select_from(invoice_lines))
        ).scalar()
    return count, distinct, lines


async def test_a_run_is_asynchronous_and_reports_its_progress(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url) as client:
        await _seed_many(client.container)
        started = await client.post(
            RUNS, json={"period": str(period)}, headers={"Idempotency-Key": "async-1"}
        )
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "queued"
        run = await settled_run(client, started)
        assert run["status"] == "completed" and run["error"] is None
        counts = run["counts"]
        assert counts == {
            "subscriptions": CUSTOMERS,
            "rated": CUSTOMERS,
            "invoiced": CUSTOMERS,
            "skipped": 0,
            "held": 0,
            "corrected": 0,
            "posted": CUSTOMERS,
            "pending": 0,
            "failed": 0,
        }
        # Audited: started by the client that asked, completed by the worker.
        entries, _ = await client.container.audit.list(
            subject_type="billing_run", subject_id=run["id"]
        )
        assert [e.action for e in entries] == ["billing_run.started", "billing_run.completed"]
        registered = {c.client_id for c in await client.container.clients.list()}
        assert entries[0].actor in registered and entries[1].actor == "worker"
        finalized, _ = await client.container.audit.list(action="invoice.finalized", limit=100)
        assert len(finalized) == CUSTOMERS
        listed = (await client.get(RUNS)).json()["data"]
        assert [r["id"] for r in listed] == [run["id"]]
        assert listed[0]["counts"] == counts


async def test_a_run_whose_runner_dies_is_resumed_and_bills_nothing_twice(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await _seed_many(c)
        stalling = Stalls(c.billing, at=6)
        first = BillingRunner(_service(c, stalling, lease=1.0))
        run = await _service(c, c.billing, lease=1.0).start(period)
        first.kick()
        await asyncio.wait_for(stalling.stalled.wait(), 10)
        # The runner hangs on the 6th subscription with five invoices written: it is
        # dead to the others once its lease runs out (it renews it only between
        # subscriptions).
        stuck = await c.billing_runs.get(run.id)
        assert stuck.status == "running"
        assert (await _documents(c))[0] == 5

        second = BillingRunner(_service(c, c.billing, lease=1.0))
        assert await second.run_pending() == 0  # the lease still holds
        await asyncio.sleep(1.1)
        assert await second.run_pending() == 1

        done = await c.billing_runs.get(run.id)
        assert done.status == "completed"
        assert (done.counts.subscriptions, done.counts.rated) == (CUSTOMERS, CUSTOMERS)
        assert (done.counts.invoiced, done.counts.skipped) == (CUSTOMERS, 0)
        invoiced, distinct, lines = await _documents(c)
        assert invoiced == distinct == CUSTOMERS
        assert lines == CUSTOMERS * 2  # platform fee and calls, once each

        # The stalled runner wakes up late: every invoice it tries exists already, and it
        # stops once it finds its lease gone, leaving the run as the second left it.
        stalling.release.set()
        await asyncio.sleep(0.5)
        await first.aclose()
        assert await _documents(c) == (invoiced, distinct, lines)
        assert (await c.billing_runs.get(run.id)).counts == done.counts

        # Re-running the period is a no-op for what is billed.
        again = await c.billing_runs.run(period)
        assert (again.status, again.counts.invoiced, again.counts.skipped) == (
            "completed",
            0,
            CUSTOMERS,
        )
        assert await _documents(c) == (invoiced, distinct, lines)


async def test_a_run_that_cannot_go_on_fails_with_its_reason(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        run = await _service(c, Breaks(c.billing), lease=5).run(period)
        assert run.status == "failed"
        assert run.error == "internal_error: RuntimeError"
        assert run.completed_at is not None
        assert (await _documents(c))[0] == 0
        # Nothing is left half-done: a new run bills the period.
        retry = await c.billing_runs.run(period)
        assert (retry.status, retry.counts.invoiced) == ("completed", 2)
