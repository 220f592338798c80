"""Alembic environment: async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

import asyncio

from alembic import context
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from canonical.persistence import SQLITE_PAGE_SIZE
from gateway.migrate import ALL_METADATA

config = context.config
target_metadata = ALL_METADATA


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _page_size(dbapi_connection, _record) -> None:
            # Only a new database takes it: the page size the app's engine asks for too.
            dbapi_connection.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")

    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
