"""A live billing run keeps its lease while a subscription waits out a wrapped system's
pause (Retry-After longer than the lease): no other runner takes it over, and the run
bills everything once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from canonical import errors
from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, seed


async def test_a_run_waiting_on_a_pause_longer_than_its_lease_is_not_taken_over(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        runs = c.billing_runs
        runs.lease = timedelta(seconds=1)
        tax = runs._biller._tax
        quote, calls = tax.quote, 0

        async def paused_once(request):
            nonlocal calls
            calls += 1
            if calls == 1:  # a maintenance window: come back in 2.5 s
                raise errors.SystemUnavailable("maintenance", retry_after=2.5)
            return await quote(request)

        tax.quote = paused_once
        run = await runs.start(period)
        first = asyncio.create_task(runs.execute(run.id, owner="A"))
        await asyncio.sleep(1.6)  # past the lease A took, while A waits
        assert await runs.claimable() == []
        assert await runs.execute(run.id, owner="B") is False
        assert await first is True
        done = await runs.get(run.id)
        assert done.status == "completed", done.error
        assert (done.counts.held, done.counts.invoiced) == (0, done.counts.subscriptions)
