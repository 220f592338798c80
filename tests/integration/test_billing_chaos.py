"""Chaos: a billing run for many customers while the ERP misbehaves every way it can and
the worker process is killed mid-run.

A ``meterline worker`` process executes the run and drains the outbox against the
reference ERP with fault injection: latency, 503s, its own quota (429 with Retry-After,
our throttle set above it), a maintenance window, and 5 % ambiguous commits (the
document is committed, the answer lost). The worker is killed (SIGKILL) once some
invoices are written and started again. Afterwards:

- the run is completed and every subscription is invoiced exactly once;
- every document is in the ERP exactly once, with Meterline's totals, and posted;
- reconciliation of the period shows no variance and the ERP's ledger balances;
- the audit log verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.time import Period, utcnow
from process_apis.tables import invoices, postings
from tests.support.app import gateway_client
from tests.support.processes import METERLINE, ROOT, stop, until
from tests.support.seeding import USAGE_PLAN, moments, seed_many

CUSTOMERS = 40


def _faults(start_in: float) -> str:
    """The ERP's misbehaviour: a maintenance window opening ``start_in`` seconds from now
    for two seconds, on top of steady latency, errors, a quota and lost answers."""
    opens = utcnow() + timedelta(seconds=start_in)
    closes = opens + timedelta(seconds=2)
    window = (
        f"{opens.isoformat().replace('+00:00', 'Z')}/{closes.isoformat().replace('+00:00', 'Z')}"
    )
    return (
        "latency_ms=5,latency_jitter_ms=20,error_rate=0.15,quota_per_second=15,"
        f"ambiguous_rate=0.05,seed=11,maintenance={window}"
    )


def _worker(database_url: str, log, faults: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "METERLINE_ERP_FAULTS": faults,
        # Faster than the ERP allows: its 429s must be honoured, not avoided.
        "METERLINE_ERP_QUOTA_PER_SECOND": "40",
        "METERLINE_ERP_POST_ATTEMPTS": "3",
        "METERLINE_ERP_BREAKER_THRESHOLD": "4",
        "METERLINE_ERP_BREAKER_RESET_SECONDS": "0.5",
        "METERLINE_WORKER_INTERVAL_SECONDS": "0.2",
        "METERLINE_BILLING_RUN_LEASE_SECONDS": "2",
        "METERLINE_LOG_LEVEL": "INFO",
    }
    env.pop("METERLINE_DATABASE_URL", None)
    return subprocess.Popen([str(METERLINE), "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)


async def _count(container, query) -> int:
    async with container.sessions() as session:
        return (await session.execute(query)).scalar_one()


async def test_a_run_survives_a_misbehaving_erp_and_a_killed_worker(database_url, tmp_path):
    period = Period.containing(utcnow())
    log_path = tmp_path / "worker.log"
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        customers = await seed_many(c, USAGE_PLAN, CUSTOMERS)
        stamps = moments(period, 3)
        events = [
            {
                "id": f"chaos-{n}-{i}",
                "source": "chaos",
                "event_type": "api.request",
                "customer_id": customer_id,
                "timestamp": stamps[i],
            }
            for n, customer_id in enumerate(customers)
            for i in range(n % 3 + 1)
        ]
        assert (await client.post("/process/usage/v1/events", json=events)).status_code == 200
        run = await c.billing_runs.start(period)

        with log_path.open("ab") as log:
            worker = _worker(database_url, log, _faults(start_in=3))
            try:
                # Killed without warning once the run has written some invoices.
                count_invoices = sa.select(sa.func.count()).select_from(invoices)
                await until(
                    lambda: _some(c, count_invoices, 5),
                    60,
                    "the first invoices of the run",
                    interval=0.1,
                )
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                # Killed mid-run: the run is still running, and far from done.
                killed = await c.billing_runs.get(run.id)
                assert killed.status == "running", killed
                assert 5 <= await _count(c, count_invoices) < CUSTOMERS
                worker = _worker(database_url, log, _faults(start_in=1))

                async def settled() -> bool:
                    current = await c.billing_runs.get(run.id)
                    return current.status == "completed" and current.counts.pending == 0

                await until(
                    settled, 180, "the run completed and its documents posted", interval=0.1
                )
            finally:
                stop(worker)
        output = log_path.read_text()

        done = await c.billing_runs.get(run.id)
        assert (done.counts.subscriptions, done.counts.invoiced) == (CUSTOMERS, CUSTOMERS)
        assert (done.counts.posted, done.counts.failed, done.counts.held) == (CUSTOMERS, 0, 0)

        # Exactly once: one invoice per subscription, one ERP document per invoice.
        page, _ = await c.invoices.list(limit=200)
        assert len(page) == CUSTOMERS
        assert len({i.subscription_id for i in page}) == CUSTOMERS
        documents, _ = await c.erp.list_documents(limit=500)
        refs = Counter(d.external_ref for d in documents)
        assert refs == Counter({i.id: 1 for i in page}), "a document is missing or duplicated"
        by_ref = {d.external_ref: d for d in documents}
        for invoice in page:
            assert invoice.status == "posted"
            assert by_ref[invoice.id].total == invoice.total
        balances = await c.erp.account_balances()
        assert sum(balances.values()) == Decimal(0)
        assert balances["1200"] == sum(i.total for i in page)

        report = await c.reconciliation.reconcile(period)
        assert report.status == "balanced", report.variances
        assert (await c.audit.verify()).ok

        # The chaos really happened: calls failed and were made again.
        assert "posted=" in output, output[-2000:]
        attempts = await _count(c, sa.select(sa.func.sum(postings.c.attempts)))
        assert attempts > CUSTOMERS  # some documents needed more than one call


async def _some(container, query, at_least: int) -> bool:
    return await _count(container, query) >= at_least
