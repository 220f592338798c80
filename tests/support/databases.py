"""Throwaway databases for tests, migrated with the project's Alembic migrations.

The migrations run once per test process and backend, into a template; every throwaway
database is a fresh copy of it (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE``
on PostgreSQL), so each test still starts from an empty, migrated schema of its own
without paying for the migrations again. The PostgreSQL template carries a unique name
and is dropped by ``drop_templates()`` (tests/conftest.py calls it when the session
ends), as every throwaway database is dropped when its test ends: CI reuses the
service."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.migrate import upgrade

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

# Migrated templates of this process: the SQLite file, and PostgreSQL database names by
# admin URL.
_sqlite_template: Path | None = None
_postgres_templates: dict[str, str] = {}


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", POSTGRES_DEFAULT)


def _database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


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


async def _sqlite_template_file() -> Path:
    global _sqlite_template
    if _sqlite_template is None:
        directory = Path(tempfile.mkdtemp(prefix="meterline-template-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "template.db"
        await upgrade(f"sqlite+aiosqlite:///{path}")  # its engine is disposed on return
        _sqlite_template = path
    return _sqlite_template


@contextlib.asynccontextmanager
async def throwaway_sqlite(tmp_path):
    """A migrated SQLite file in ``tmp_path`` (removed with it)."""
    path = Path(tmp_path) / "meterline.db"
    shutil.copyfile(await _sqlite_template_file(), path)
    yield f"sqlite+aiosqlite:///{path}"


async def _postgres_template(admin, admin_url: str) -> str:
    if admin_url not in _postgres_templates:
        name = f"meterline_template_{uuid.uuid4().hex[:12]}"
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            await upgrade(_database_url(admin_url, name))  # disconnects when done
        except BaseException:  # a failed migration fails this test; the next one retries
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            raise
        _postgres_templates[admin_url] = name
    return _postgres_templates[admin_url]


@contextlib.asynccontextmanager
async def throwaway_postgres(admin_url: str):
    """A uniquely named, migrated database in the service, dropped after."""
    name = f"meterline_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        template = await _postgres_template(admin, admin_url)
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        try:
            yield _database_url(admin_url, name)
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def drop_templates() -> None:
    """Drops the PostgreSQL templates this process created."""
    while _postgres_templates:
        admin_url, name = _postgres_templates.popitem()
        admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await admin.dispose()
