"""Two real gateway processes on one Redis draw on one budget.

Each process is a uvicorn server on its own port, sharing the database (for the OAuth
client) and the Redis key prefix. Requests alternate between the two; the number of
answers that are not 429 must equal the budget, not twice it.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.auth import issue_token
from tests.support.processes import METERLINE, ROOT, gateway_processes

pytestmark = pytest.mark.redis

BUDGET = 10
READ_PATH = "/experience/portal/v1/customers/cus_x/invoices"


def meterline(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(METERLINE), *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def create_client(env: dict[str, str]) -> tuple[str, str]:
    out = meterline(
        "clients",
        "create",
        "--name",
        "rate-limit-test",
        "--scopes",
        "portal:read billing:read",
        "--json",
        env=env,
    )
    # The JSON document is the last thing printed (progress or notices may precede it).
    created = json.loads(out[out.index("{") :])
    return created["client_id"], created["client_secret"]


async def test_two_gateways_share_one_budget(sqlite_url, redis_url, tmp_path):
    url, prefix = redis_url
    env = {
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": url,
        "METERLINE_REDIS_KEY_PREFIX": prefix,
        "METERLINE_RATE_LIMIT_READ": f"{BUDGET}/minute",
        "METERLINE_LOG_LEVEL": "WARNING",
    }
    client_id, secret = create_client(env)

    async with gateway_processes(env, tmp_path / "one.log", tmp_path / "two.log", timeout=10) as (
        a,
        b,
    ):
        # A token from each gateway: the budget belongs to the client, not the token.
        tokens = {
            a: await issue_token(a, client_id, secret),
            b: await issue_token(b, client_id, secret),
        }
        statuses = []
        for i in range(2 * BUDGET):
            gateway = a if i % 2 == 0 else b
            response = await gateway.get(
                READ_PATH, headers={"Authorization": f"Bearer {tokens[gateway]}"}
            )
            assert response.status_code not in (401, 403, 500), response.text
            statuses.append(response.status_code)
            assert "RateLimit" in response.headers, response.headers
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1

    allowed = [s for s in statuses if s != 429]
    assert len(allowed) == BUDGET, statuses
    # Both gateways answered within the budget and both refused beyond it.
    assert statuses[:BUDGET].count(429) == 0 and set(statuses[BUDGET:]) == {429}
