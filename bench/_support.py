"""What both benchmarks need: a fresh migrated database that is removed afterwards, a free
port, an access token from the gateway's token endpoint, and removing the Redis keys a
run leaves (CI and developers reuse the services).

The scripts put the repository root on ``sys.path`` before importing this module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from canonical.persistence import create_engine
from gateway.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 20.0
PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def fresh_database(workdir: Path, *, postgres: bool = False):
    """The URL of a migrated, empty database: a new SQLite file in ``workdir`` (removed
    with it), or a new PostgreSQL database dropped on the way out, whatever happens."""
    if not postgres:
        url = f"sqlite+aiosqlite:///{workdir / f'{uuid.uuid4().hex}.db'}"
        await upgrade(url)
        yield url
        return
    name = f"meterline_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
            await upgrade(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def access_token(client: httpx.AsyncClient, credentials: tuple[str, str]) -> str:
    """A token by the client credentials grant, the way a registered client gets one."""
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
    )
    response.raise_for_status()
    return response.json()["access_token"]


async def drop_redis_keys(url: str, prefix: str) -> None:
    """Deletes every key under ``prefix``."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.asynccontextmanager
async def gateway_process(url: str, **env: str):
    """A gateway in a uvicorn process of its own on ``url``'s database: yields an httpx
    client on it (once it is live) and the process; terminated on the way out."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "METERLINE_LOG_LEVEL": "WARNING", **env},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            await _wait_live(http, server)
            yield http, server
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


async def _wait_live(http: httpx.AsyncClient, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gateway exited with {server.returncode} before it was live")
        try:
            if (await http.get("/health/live")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"gateway not live after {STARTUP_SECONDS} s")
