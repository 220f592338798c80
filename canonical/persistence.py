"""Persistence kernel shared by every layer's tables: metadata conventions, the engine
factory (SQLite or PostgreSQL from one URL), column types and a portable
insert-or-ignore.

Each layer owns its tables in its own ``MetaData`` built by ``new_metadata``; Alembic
migrates the union. Amounts are stored as exact decimal strings (``DecimalText``) so
SQLite, which has no exact numeric type, never rounds money through a float.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import DateTime, Engine, MetaData, String, Text, TypeDecorator, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from canonical.time import as_utc

__all__ = [
    "SQLITE_PAGE_SIZE",
    "DecimalText",
    "JSONDoc",
    "UTCDateTime",
    "create_engine",
    "create_sqlite_writer",
    "insert_ignore",
    "new_metadata",
    "session_factory",
    "sqlite_datetimes",
    "upsert",
    "upsert_insert",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING)


class DecimalText(TypeDecorator):
    """Exact decimals stored as text (money, quantities, rates)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: Any, dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (naive storage) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value)

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


class JSONDoc(TypeDecorator):
    """JSON documents encoded by msgspec, so Decimals and datetimes survive as strings."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else msgspec.json.encode(value).decode()

    def process_result_value(self, value, dialect):
        return None if value is None else msgspec.json.decode(value)


def sqlite_datetimes(values: Sequence[datetime]) -> list[str]:
    """Aware datetimes as ``UTCDateTime`` stores them on SQLite (UTC,
    ``YYYY-MM-DD HH:MM:SS.ffffff``, the text SQLAlchemy writes and parses), for bulk
    statements that bypass the type. Formatted by one msgspec call: a C loop, where
    ``strftime`` per value would cost a microsecond each."""
    utc = [value if value.tzinfo is UTC else value.astimezone(UTC) for value in values]
    # msgspec writes 2026-01-31T12:00:00Z, or ...T12:00:00.000001Z with six digits.
    return [
        f"{text[:10]} {text[11:19]}{text[19:26] if len(text) > 20 else '.000000'}"
        for text in msgspec.json.decode(msgspec.json.encode(utc))
    ]


SQLITE_PAGE_SIZE = 8192
# Page cache of the SQLite writer connection: the hot parts of the event indexes.
WRITER_CACHE_KIB = 65_536


def _sqlite_pragmas(dbapi_connection, *, synchronous: str = "NORMAL") -> None:
    cursor = dbapi_connection.cursor()
    # Takes effect when the database is created (before WAL is on): larger pages mean
    # fewer splits and page writes for the event tables' indexes.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URLs."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection, _record) -> None:
            _sqlite_pragmas(dbapi_connection)

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def create_sqlite_writer(url: str) -> Engine:
    """A synchronous engine on the SQLite database of ``url`` (an aiosqlite URL), for a
    thread that writes on its own: transactions take the write lock when they begin
    (``BEGIN IMMEDIATE``, so a read cannot be refused an upgrade half-way), and commits
    are synced to disk (``synchronous=FULL``): what it acknowledges survives a power
    loss, not only a crash."""
    engine = sa_create_engine(
        url.replace("sqlite+aiosqlite:", "sqlite:", 1),
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        _sqlite_pragmas(dbapi_connection, synchronous="FULL")
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        dbapi_connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def upsert_insert(table, dialect_name: str):
    """The dialect's INSERT, which has ``on_conflict_do_*`` on SQLite and PostgreSQL alike."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table)


def upsert(table, dialect_name: str, row: dict, keys: list[str], *, keep=("created_at",)):
    """``INSERT row ... ON CONFLICT (keys) DO UPDATE`` every other given column except
    ``keep`` (by default the creation time): one atomic statement on both backends."""
    stmt = upsert_insert(table, dialect_name).values(**row)
    skip = {*keys, *keep}
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c: stmt.excluded[c] for c in row if c not in skip}
    )


def insert_ignore(table, dialect_name: str, index_elements: list[str]):
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for SQLite or PostgreSQL."""
    return upsert_insert(table, dialect_name).on_conflict_do_nothing(index_elements=index_elements)
