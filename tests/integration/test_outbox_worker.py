"""The outbox worker against an ERP that misbehaves: transient failures retried with
backoff (honouring Retry-After), permanent ones turned into exceptions, a circuit breaker
that stops calling a down ERP and resumes after, the ERP's quota respected, and two
workers that never post a document twice."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from canonical import errors
from canonical.time import Period, utcnow
from process_apis.posting.outbox import OutboxWorker, PostingPolicy
from process_apis.posting.service import PostingService
from process_apis.tables import postings
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, seed_many


class Scripted:
    """The reference ERP, with ``post_invoice`` failing as scripted: each entry of
    ``failures`` is raised by one call, in order, before calls go through. With
    ``down``, every call fails until ``down`` is cleared."""

    def __init__(self, erp, failures=(), *, latency: float = 0.0) -> None:
        self._erp = erp
        self._failures = list(failures)
        self._latency = latency
        self.down = False
        self.calls: list[float] = []

    def __getattr__(self, name):
        return getattr(self._erp, name)

    async def post_invoice(self, invoice):
        self.calls.append(time.monotonic())
        if self._latency:
            await asyncio.sleep(self._latency)
        if self.down:
            raise errors.SystemUnavailable("ERP down", system="erp")
        if self._failures:
            raise self._failures.pop(0)
        return await self._erp.post_invoice(invoice)


def _worker(container, erp, **policy) -> OutboxWorker:
    defaults = {"initial_backoff": 0.01, "max_backoff": 0.05, "quota_per_second": 1000}
    posting = PostingService(container.sessions, erp, container.crm)
    return OutboxWorker(posting, PostingPolicy(**{**defaults, **policy}))


async def _billed(container, customers: int) -> list[str]:
    """Bill the current period for ``customers`` customers; the invoice ids (pending)."""
    await seed_many(container, USAGE_PLAN, customers)
    run = await container.billing_runs.run(Period.containing(utcnow()))
    assert run.counts.pending == customers
    page, _ = await container.invoices.list(run_id=run.id, limit=100)
    return [invoice.id for invoice in page]


async def _outbox(container) -> dict[str, tuple[str, int]]:
    async with container.sessions() as session:
        rows = await session.execute(
            sa.select(postings.c.invoice_id, postings.c.status, postings.c.attempts)
        )
        return {row.invoice_id: (row.status, row.attempts) for row in rows}


async def _erp_documents(container) -> list[str]:
    documents, _ = await container.erp.list_documents(limit=1000)
    return [d.external_ref for d in documents]


async def test_transient_failures_are_retried_honouring_retry_after(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        invoice_id = sorted(await _billed(c, 2))[0]  # posted first
        erp = Scripted(
            c.erp,
            [
                errors.SystemThrottled("429", retry_after=0.3, system="erp"),
                errors.SystemUnavailable("503", system="erp"),
            ],
        )
        result = await _worker(c, erp).drain()

        assert (result.posted, result.failed, result.pending) == (2, 0, 0)
        # Three calls for the first document: the 429's Retry-After was waited out.
        assert len(erp.calls) == 4
        assert erp.calls[1] - erp.calls[0] >= 0.3
        outbox = await _outbox(c)
        assert outbox[invoice_id] == ("posted", 3)
        assert sorted(await _erp_documents(c)) == sorted(outbox)


async def test_a_document_still_failing_waits_for_its_next_attempt(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        [first, second] = sorted(await _billed(c, 2))
        failing = [errors.SystemUnavailable("503", system="erp") for _ in range(2)]
        erp = Scripted(c.erp, failing)
        worker = _worker(c, erp, attempts=2, initial_backoff=0.4, max_backoff=0.4)

        result = await worker.drain()
        assert (result.posted, result.pending) == (1, 1)
        outbox = await _outbox(c)
        assert outbox[first] == ("pending", 2) and outbox[second] == ("posted", 1)
        assert await _erp_documents(c) == [second]

        # Not due yet: a drain right away makes no call.
        calls = len(erp.calls)
        assert (await worker.drain()).posted == 0 and len(erp.calls) == calls
        await asyncio.sleep(0.5)
        assert (await worker.drain()).posted == 1
        assert (await _outbox(c))[first] == ("posted", 3)


async def test_a_permanent_refusal_fails_the_posting_and_raises_an_exception(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await _billed(c, 2)
        # The accounting period is closed in the ERP: it refuses the documents.
        await c.erp.set_period_status("le_de", str(Period.containing(utcnow())), "closed")
        result = await _worker(c, c.erp).drain()
        assert (result.posted, result.failed) == (0, 2)
        assert {status for status, _ in (await _outbox(c)).values()} == {"failed"}
        found = (
            await client.get("/process/exceptions/v1/", params={"kind": "posting_failed"})
        ).json()["data"]
        assert len(found) == 2
        context = found[0]["context"]
        assert context["invoice_number"].startswith("INV-") and context["currency"] == "EUR"
        assert await _erp_documents(c) == []


async def test_the_circuit_breaker_stops_calls_to_a_down_erp_and_resumes(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        invoices = await _billed(c, 6)
        erp = Scripted(c.erp)
        erp.down = True
        worker = _worker(c, erp, attempts=2, breaker_threshold=3, breaker_reset_seconds=0.5)

        result = await worker.drain()
        # Three failed calls open the breaker; no call is made while it is open.
        assert len(erp.calls) == 3
        assert worker.breaker_open()
        assert (result.posted, result.failed, result.pending) == (0, 0, 6)
        assert (await worker.drain()).pending == 0 and len(erp.calls) == 3

        erp.down = False
        await asyncio.sleep(0.6)
        assert not worker.breaker_open()
        result = await worker.drain()
        assert result.posted == 6
        assert sorted(await _erp_documents(c)) == sorted(invoices)
        assert {status for status, _ in (await _outbox(c)).values()} == {"posted"}


async def test_posting_keeps_to_the_erp_quota(sqlite_url):
    async with gateway_client(sqlite_url, worker_in_process=False) as client:
        c = client.container
        await _billed(c, 8)
        erp = Scripted(c.erp)
        result = await _worker(c, erp, quota_per_second=10).drain()
        assert result.posted == 8
        # At most 10 calls per second, evenly spaced: none closer than 0.1 s, so no
        # moving second ever holds more than the quota.
        gaps = [b - a for a, b in zip(erp.calls, erp.calls[1:], strict=False)]
        assert min(gaps) >= 0.095, gaps
        assert erp.calls[-1] - erp.calls[0] >= 0.65


async def test_two_workers_never_post_a_document_twice(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        invoices = await _billed(c, 12)
        erp = Scripted(c.erp, latency=0.01)
        first, second = _worker(c, erp), _worker(c, erp)
        results = await asyncio.gather(first.drain(), second.drain())
        assert sum(r.posted for r in results) == 12
        assert len(erp.calls) == 12  # each document sent once, by one worker
        assert sorted(await _erp_documents(c)) == sorted(invoices)
