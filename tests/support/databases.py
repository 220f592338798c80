"""Throwaway databases for tests, migrated with the project's Alembic migrations."""

from __future__ import annotations

import contextlib
import os
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.migrate import upgrade

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", POSTGRES_DEFAULT)


async def postgres_available() -> tuple[bool, str]:
    engine = create_async_engine(postgres_admin_url())
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("select 1"))
        return True, ""
    except Exception as exc:  # any failure means "not reachable" here
        return False, f"{postgres_admin_url()}: {type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


async def redis_available(url: str) -> tuple[bool, str]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
        return True, ""
    except Exception as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def throwaway_sqlite(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'meterline.db'}"
    await upgrade(url)
    yield url


@contextlib.asynccontextmanager
async def throwaway_postgres(admin_url: str):
    """Creates a uniquely named database in the service, migrates it, drops it after."""
    name = f"meterline_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        await upgrade(url)
        try:
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
