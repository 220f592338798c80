"""Cursor pagination of the process tables (``?limit=&starting_after=``), shared by the
stores behind every Process API list: rows in ``id`` order, after the cursor's id."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["equal_to", "fetch_page"]


def equal_to(table: sa.Table, **values: Any) -> list:
    """One ``column == value`` condition per given value; ``None`` means no filter."""
    return [table.c[name] == value for name, value in values.items() if value is not None]


async def fetch_page(
    session: AsyncSession,
    table: sa.Table,
    conditions: list,
    *,
    limit: int,
    starting_after: str | None,
) -> tuple[list[Any], bool]:
    """Up to ``limit`` rows of ``table`` matching ``conditions``, and whether more follow
    (one row more is read to know)."""
    query = sa.select(table).where(*conditions).order_by(table.c.id).limit(limit + 1)
    if starting_after:
        query = query.where(table.c.id > starting_after)
    rows = (await session.execute(query)).all()
    return rows[:limit], len(rows) > limit
