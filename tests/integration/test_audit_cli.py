"""``meterline audit verify`` on the log the product writes: OK after real state changes,
and exit status 1 naming the entry once one is altered."""

from __future__ import annotations

import asyncio
import re

import sqlalchemy as sa
from click.testing import CliRunner

from canonical.persistence import create_engine
from canonical.time import Period, utcnow
from gateway.cli import main
from tests.support.app import gateway_client
from tests.support.databases import throwaway_sqlite
from tests.support.seeding import USAGE_PLAN, seed


def test_audit_verify_reports_ok_then_the_altered_entry(tmp_path, monkeypatch):
    async def bill_and_post() -> str:
        async with throwaway_sqlite(tmp_path) as url:
            async with gateway_client(url, worker_in_process=False) as client:
                c = client.container
                await seed(c, USAGE_PLAN)
                await c.billing_runs.run(Period.containing(utcnow()))
                await c.outbox.drain()
            return url

    url = asyncio.run(bill_and_post())
    monkeypatch.delenv("METERLINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", url)

    ok = CliRunner().invoke(main, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    # Two invoices posted: at least their two entries.
    checked = re.search(r"^OK: (\d+) entries, head \d+ [0-9a-f]{64}$", ok.output, re.M)
    assert checked and int(checked.group(1)) >= 2, ok.output

    async def tamper() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE audit_log SET actor = 'someone else' WHERE seq = 1"))
        await engine.dispose()

    asyncio.run(tamper())
    broken = CliRunner().invoke(main, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "audit log broken at entry 1 (altered)" in broken.output
