"""Real gateway processes for tests: each a uvicorn server of its own on a free port,
with the environment the test gives it (over this process's), its output in a log file
the failure messages quote. Such processes use the production Argon2 hasher (see
tests/support/hashing.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The ``meterline`` command of this virtual environment.
METERLINE = Path(sys.executable).with_name("meterline")
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Terminates ``process`` (if it still runs) and waits for it; kills it if it does not
    exit within 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


async def until(
    predicate, timeout: float = 10.0, what: str = "the condition", interval: float = 0.05
) -> None:
    """Awaits ``predicate()`` every ``interval`` seconds until it is true; fails naming
    ``what`` after ``timeout`` seconds (another process, or a background task, is doing the
    work)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "gateway.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


async def _wait_live(http: httpx.AsyncClient, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/health/live")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    pytest.fail(f"gateway not live after {STARTUP_SECONDS} s:\n{log.read_text()}")


@contextlib.asynccontextmanager
async def gateway_processes(env: dict[str, str], *logs: Path, timeout: float = 30):
    """One gateway process per log file, all started at once with ``env`` added to this
    process's environment. Yields an ``httpx.AsyncClient`` on each (its ``process``
    attribute is the ``Popen``; ``timeout`` its per-request timeout in seconds) once
    every one answers ``/health/live``; fails the test if one exits or is not live
    within ``STARTUP_SECONDS``. Every process is terminated (killed if it lingers) on the
    way out, whatever happens."""
    processes: list[subprocess.Popen] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for log in logs:
                process, base_url = _start(env, log)
                processes.append(process)
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=base_url, timeout=timeout)
                )
                http.process = process
                clients.append(http)
            await asyncio.gather(
                *(
                    _wait_live(http, http.process, log)
                    for http, log in zip(clients, logs, strict=True)
                )
            )
            yield clients
    finally:
        for process in processes:
            stop(process)
