"""Two real gateway processes on one Redis draw on one budget.

Each process is a uvicorn server on its own port, sharing the database (for the OAuth
client) and the Redis key prefix. Requests alternate between the two; the number of
answers that are not 429 must equal the budget, not twice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.auth import issue_token

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 10
READ_PATH = "/experience/portal/v1/customers/cus_x/invoices"
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def meterline(*args: str, env: dict[str, str]) -> str:
    command = [str(Path(sys.executable).with_name("meterline")), *args]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
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


@contextlib.contextmanager
def gateway_process(env: dict[str, str], log: Path):
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "gateway.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process, f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


async def wait_live(client: httpx.AsyncClient, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/health/live")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    pytest.fail(f"gateway not live after {STARTUP_SECONDS} s:\n{log.read_text()}")


async def test_two_gateways_share_one_budget(sqlite_url, redis_url, tmp_path):
    url, prefix = redis_url
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": url,
        "METERLINE_REDIS_KEY_PREFIX": prefix,
        "METERLINE_RATE_LIMIT_READ": f"{BUDGET}/minute",
        "METERLINE_LOG_LEVEL": "WARNING",
    }
    client_id, secret = create_client(env)

    with (
        gateway_process(env, tmp_path / "one.log") as (one, one_url),
        gateway_process(env, tmp_path / "two.log") as (two, two_url),
    ):
        async with (
            httpx.AsyncClient(base_url=one_url, timeout=10) as a,
            httpx.AsyncClient(base_url=two_url, timeout=10) as b,
        ):
            await asyncio.gather(
                wait_live(a, one, tmp_path / "one.log"), wait_live(b, two, tmp_path / "two.log")
            )
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
