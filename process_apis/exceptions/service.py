"""Exceptions: business problems finance must see and fix (unknown customer, unknown
event type, ERP rejection, ...). One open record per (kind, subject), counting repeats."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation, errors
from canonical.ids import new_id
from canonical.model import ExceptionRecord
from canonical.persistence import upsert_insert
from canonical.time import utcnow
from process_apis.audit import append
from process_apis.paging import equal_to, fetch_page
from process_apis.tables import exceptions

__all__ = [
    "ExceptionService",
    "exceptions_upsert",
    "open_subjects",
    "raise_exception",
    "raise_exceptions",
    "resolve_exceptions",
]


async def raise_exception(
    session: AsyncSession,
    kind: str,
    subject: str,
    detail: str,
    context: dict[str, Any],
    occurrences: int = 1,
) -> None:
    """Open (or re-open and count) the exception for ``(kind, subject)`` in ``session``'s
    transaction, so it commits atomically with the work that found it."""
    await raise_exceptions(session, kind, [(subject, detail, context, occurrences)])


async def raise_exceptions(
    session: AsyncSession,
    kind: str,
    found: list[tuple[str, str, dict[str, Any], int]],
    *,
    correlation_id: str | None = None,
) -> None:
    """``raise_exception`` for many ``(subject, detail, context, occurrences)`` of one
    kind in one statement (ingest may meet hundreds of unknown customers in a batch)."""
    if found:
        stmt, rows = exceptions_upsert(session.bind.dialect.name, kind, found, correlation_id)
        await session.execute(stmt, rows)


async def open_subjects(session: AsyncSession, kind: str, *, prefix: str = "") -> set[str]:
    """Subjects of the open exceptions of ``kind`` (starting with ``prefix``), as
    ``session`` sees them."""
    conditions = [exceptions.c.kind == kind, exceptions.c.status == "open"]
    if prefix:
        conditions.append(exceptions.c.subject.startswith(prefix, autoescape=True))
    rows = await session.execute(sa.select(exceptions.c.subject).where(*conditions))
    return {r[0] for r in rows}


async def resolve_exceptions(
    session: AsyncSession, kind: str, subjects: set[str], *, resolution: str | None = None
) -> int:
    """Close the open exceptions of ``kind`` about ``subjects`` in ``session``'s
    transaction (the work they were about went through, or is moot); how many closed."""
    if not subjects:
        return 0
    now = utcnow()
    result = await session.execute(
        sa.update(exceptions)
        .where(
            exceptions.c.kind == kind,
            exceptions.c.status == "open",
            exceptions.c.subject.in_(sorted(subjects)),
        )
        .values(status="resolved", resolved_at=now, updated_at=now, resolution=resolution)
    )
    return result.rowcount or 0


def exceptions_upsert(
    dialect_name: str,
    kind: str,
    found: list[tuple[str, str, dict[str, Any], int]],
    correlation_id: str | None = None,
):
    """The statement and rows that open (or re-open and count) exceptions; for callers
    that execute them on a connection of their own (the ingest writer).
    ``correlation_id`` names the causing request when it is not the current one (work
    done on a request's behalf by a group commit or a stream consumer)."""
    now = utcnow()
    corr = correlation_id or correlation.current()
    stmt = upsert_insert(exceptions, dialect_name)
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "subject"],
        set_={
            "occurrences": exceptions.c.occurrences + stmt.excluded.occurrences,
            "status": "open",
            "detail": stmt.excluded.detail,
            "context": stmt.excluded.context,
            "updated_at": stmt.excluded.updated_at,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
        },
    )
    rows = [
        {
            "id": new_id("exc"),  # ids (the listing order) follow the order found
            "kind": kind,
            "subject": subject,
            "status": "open",
            "detail": detail,
            "context": context,
            "occurrences": occurrences,
            "correlation_id": corr,
            "created_at": now,
            "updated_at": now,
        }
        for subject, detail, context, occurrences in found
    ]
    # Written in subject order, so that two transactions touching the same subjects lock
    # their rows in the same order and cannot deadlock.
    return stmt, sorted(rows, key=lambda row: row["subject"])


def _record(row) -> ExceptionRecord:
    return ExceptionRecord(
        id=row.id,
        kind=row.kind,
        status=row.status,
        detail=row.detail,
        context={**row.context, "subject": row.subject, "occurrences": row.occurrences},
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


class ExceptionService:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> tuple[list[ExceptionRecord], bool]:
        # An empty filter (``?kind=``) means no filter here.
        conditions = equal_to(exceptions, status=status or None, kind=kind or None)
        async with self._sessions() as session:
            rows, has_more = await fetch_page(
                session, exceptions, conditions, limit=limit, starting_after=starting_after
            )
        return [_record(r) for r in rows], has_more

    async def get(self, exception_id: str) -> ExceptionRecord:
        async with self._sessions() as session:
            row = (
                await session.execute(sa.select(exceptions).where(exceptions.c.id == exception_id))
            ).first()
        if row is None:
            raise errors.NotFound(f"exception {exception_id} not found")
        return _record(row)

    async def resolve_subjects(self, kind: str, subjects: set[str]) -> int:
        """Close the open exceptions of ``kind`` whose subject is now mapped."""
        async with self._sessions.begin() as session:
            return await resolve_exceptions(session, kind, subjects)

    async def resolve(self, exception_id: str, *, by: str, note: str) -> ExceptionRecord:
        """Close an open exception by hand (finance fixed it outside Meterline)."""
        now = utcnow()
        async with self._sessions.begin() as session:
            closed = await session.execute(
                sa.update(exceptions)
                .where(exceptions.c.id == exception_id, exceptions.c.status == "open")
                .values(
                    status="resolved",
                    resolved_at=now,
                    updated_at=now,
                    resolved_by=by,
                    resolution=note,
                )
            )
            if closed.rowcount == 1:
                await append(
                    session,
                    action="exception.resolved",
                    subject_type="exception",
                    subject_id=exception_id,
                    data={"note": note},
                )
        if closed.rowcount != 1:
            current = await self.get(exception_id)  # NotFound when there is none
            raise errors.InvalidTransition(
                f"exception {exception_id} is {current.status} already", status=current.status
            )
        return await self.get(exception_id)

    async def record_retry(self, exception_id: str) -> None:
        """Audit that finance re-drove the work behind an exception."""
        async with self._sessions.begin() as session:
            await append(
                session,
                action="exception.retried",
                subject_type="exception",
                subject_id=exception_id,
            )

    async def open_subjects(self, kind: str, *, prefix: str = "") -> set[str]:
        """Subjects of the open exceptions of ``kind`` (starting with ``prefix``)."""
        async with self._sessions() as session:
            return await open_subjects(session, kind, prefix=prefix)
