"""The ERP posting backlog: every document the outbox has not delivered, with where it
stands in the outbox and the open exception about it.

Read from the outbox the posting worker keeps (``erp_postings``); a row is ``pending``
until the ERP takes it, ``failed`` once the ERP refused it for good (the
``posting_failed`` exception about it is retried once the cause is fixed)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from process_apis.tables import exceptions, invoices, postings

__all__ = ["BACKLOG_STATUSES", "BacklogEntry", "PostingBacklog"]

BACKLOG_STATUSES = ("pending", "failed")


class BacklogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A document the ERP does not hold yet, as the outbox records it."""

    invoice_id: str
    number: str
    kind: str
    customer_id: str
    period_start: date
    currency: str
    total: Decimal
    status: str  # pending | failed
    attempts: int
    last_error: str | None  # the ERP's last answer; null before the first attempt
    next_attempt_at: datetime | None  # not tried again before; null: now
    lease_until: datetime | None  # a worker holds the row until then
    waiting_since: datetime  # finalized (or written) at
    exception_id: str | None  # the open ``posting_failed`` exception about it


class PostingBacklog:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def list(
        self, *, status: str | None = None, limit: int = 50, starting_after: str | None = None
    ) -> tuple[list[BacklogEntry], bool]:
        """A page of the backlog in document id order (ids grow with time, so oldest
        first); ``starting_after`` is the last page's last ``invoice_id``."""
        statuses = (status,) if status else BACKLOG_STATUSES
        query = (
            sa.select(
                postings,
                invoices.c.number,
                invoices.c.kind,
                invoices.c.customer_id,
                invoices.c.currency,
                invoices.c.total,
                invoices.c.period_start,
                sa.func.coalesce(invoices.c.finalized_at, invoices.c.created_at).label("since"),
                exceptions.c.id.label("exception_id"),
            )
            .join(invoices, invoices.c.id == postings.c.invoice_id)
            .outerjoin(
                exceptions,
                sa.and_(
                    exceptions.c.kind == "posting_failed",
                    exceptions.c.subject == postings.c.invoice_id,
                    exceptions.c.status == "open",
                ),
            )
            .where(postings.c.status.in_(statuses))
            .order_by(postings.c.invoice_id)
            .limit(limit + 1)
        )
        if starting_after:
            query = query.where(postings.c.invoice_id > starting_after)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        entries = [
            BacklogEntry(
                invoice_id=row.invoice_id,
                number=row.number,
                kind=row.kind,
                customer_id=row.customer_id,
                period_start=row.period_start,
                currency=row.currency,
                total=row.total,
                status=row.status,
                attempts=row.attempts,
                last_error=row.last_error,
                next_attempt_at=row.next_attempt_at,
                lease_until=row.lease_until,
                waiting_since=row.since,
                exception_id=row.exception_id,
            )
            for row in rows[:limit]
        ]
        return entries, len(rows) > limit
