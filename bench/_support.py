"""What both benchmarks need: a fresh migrated database that is removed afterwards, a free
port, an access token from the gateway's token endpoint, and removing the Redis keys a
run leaves (CI and developers reuse the services).

The scripts put the repository root on ``sys.path`` before importing this module."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from canonical.persistence import create_engine
from gateway.migrate import upgrade

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
