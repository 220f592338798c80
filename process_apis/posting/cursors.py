"""Where a follower of a feed resumes: one named position per follower in
``sync_cursors`` (the ERP's payments, documents posted for revenue recognition)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.persistence import upsert
from canonical.time import utcnow
from process_apis.tables import sync_cursors

__all__ = ["move_cursor", "read_cursor"]


async def read_cursor(session: AsyncSession, name: str) -> str | None:
    """The stored position of ``name``; None before its first move."""
    return await session.scalar(
        sa.select(sync_cursors.c.position).where(sync_cursors.c.name == name)
    )


async def move_cursor(session: AsyncSession, name: str, position: str) -> None:
    """Store ``position`` for ``name``: one statement, whether or not it was stored before."""
    await session.execute(
        upsert(
            sync_cursors,
            session.bind.dialect.name,
            {"name": name, "position": position, "updated_at": utcnow()},
            ["name"],
            keep=(),
        )
    )
