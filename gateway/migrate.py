"""Alembic migrations, run programmatically on SQLite or PostgreSQL from one URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

# The audit and revenue tables join the process MetaData when imported.
import process_apis.audit.table
import process_apis.revenue.table  # noqa: F401
from gateway.auth.tables import metadata as auth_metadata
from process_apis.tables import metadata as process_metadata
from system_apis.billing.reference.tables import metadata as billing_metadata
from system_apis.crm.reference.tables import metadata as crm_metadata
from system_apis.erp.reference.tables import metadata as erp_metadata
from system_apis.tax.reference.tables import metadata as tax_metadata

__all__ = ["ALL_METADATA", "alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
ALL_METADATA = [
    crm_metadata,
    billing_metadata,
    tax_metadata,
    erp_metadata,
    process_metadata,
    auth_metadata,
]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _prepare_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``; safe to call from async code."""
    _prepare_sqlite_dir(url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)
