"""Following an asynchronous billing run to its end through the API."""

from __future__ import annotations

import asyncio
import time

import httpx

RUNS = "/process/billing/v1/runs"


async def settled_run(
    client: httpx.AsyncClient, started: httpx.Response, *, posted: bool = True, timeout=15.0
) -> dict:
    """The run ``started`` answered (202), once it is completed or failed and, with
    ``posted``, once the outbox holds none of its documents pending."""
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        run = (await client.get(f"{RUNS}/{run_id}")).json()
        finished = run["status"] in ("completed", "failed")
        if finished and (not posted or run["counts"]["pending"] == 0):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"billing run not settled after {timeout} s: {run}")
        await asyncio.sleep(0.02)
