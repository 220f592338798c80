"""Revenue journals go to the ERP under the outbox's posting policy: an ERP asking for a
long pause leaves the journals pending for the next round instead of putting the worker
to sleep, and a journal sent again is simply sent (the ERP answers a repeated
external_ref with the journal it holds): no lookup call first."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from canonical import errors
from canonical.time import Period, utcnow
from process_apis.posting.outbox import OutboxWorker, PostingPolicy
from process_apis.posting.service import PostingService
from process_apis.revenue.recognizer import RevenueRecognizer
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, seed

REVENUE = "/process/revenue/v1"


class Scripted:
    """The reference ERP, with ``post_revenue_journal`` failing as scripted (each entry
    of ``failures`` raised by one call, in order) and the journal calls counted."""

    def __init__(self, erp, failures=()) -> None:
        self._erp = erp
        self._failures = list(failures)
        self.posts = 0
        self.lookups = 0

    def __getattr__(self, name):
        return getattr(self._erp, name)

    async def post_revenue_journal(self, journal):
        self.posts += 1
        if self._failures:
            raise self._failures.pop(0)
        return await self._erp.post_revenue_journal(journal)

    async def find_revenue_journal(self, external_ref):
        self.lookups += 1
        return await self._erp.find_revenue_journal(external_ref)


async def _journals(client) -> list[dict]:
    response = await client.get(f"{REVENUE}/journals", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_a_long_retry_after_leaves_journals_for_the_next_round(database_url):
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))  # last month
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period)
        assert (await c.outbox.drain()).posted == 2
        erp = Scripted(
            c.erp, [errors.SystemThrottled("429: come back later", retry_after=1800, system="erp")]
        )
        worker = OutboxWorker(
            PostingService(c.sessions, erp, c.crm),
            PostingPolicy(quota_per_second=1000, initial_backoff=0.01, max_backoff=0.05),
            revenue=RevenueRecognizer(c.sessions, erp, c.billing),
        )

        # The round ends at once rather than sleeping half an hour: the throttled journal
        # waits for the next round, the others go through.
        await asyncio.wait_for(worker.round(), timeout=30)
        first = {j["id"]: j["status"] for j in await _journals(client)}
        waiting = [id_ for id_, status in first.items() if status == "pending"]
        assert len(waiting) == 1 and len(first) > 1
        assert erp.posts == len(first)  # the throttled one not retried inline

        await asyncio.wait_for(worker.round(), timeout=30)
        journals = {j["id"]: j["status"] for j in await _journals(client)}
        assert journals == {id_: "posted" for id_ in first}
        # The waiting journal sent once more, not looked up first.
        assert erp.posts == len(first) + 1
        assert erp.lookups == 0
