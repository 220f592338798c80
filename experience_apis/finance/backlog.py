"""The ERP posting backlog: every document the outbox has not delivered, oldest first,
with why it waits and when it is tried again.

Read from the outbox the posting worker keeps (``erp_postings``); a row is ``pending``
until the ERP takes it, ``failed`` once the ERP refused it for good (finance retries the
``posting_failed`` exception after fixing the cause)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.time import Period, as_utc, utcnow
from experience_apis.finance.views import BacklogItem
from process_apis.tables import exceptions, invoices, postings

__all__ = ["BACKLOG_STATUSES", "PostingBacklog"]

BACKLOG_STATUSES = ("pending", "failed")


class PostingBacklog:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def list(
        self, *, status: str | None = None, limit: int = 50, starting_after: str | None = None
    ) -> tuple[list[BacklogItem], bool]:
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
        now = utcnow()
        items = []
        for row in rows[:limit]:
            since = as_utc(row.since)
            lease = as_utc(row.lease_until) if row.lease_until is not None else None
            items.append(
                BacklogItem(
                    invoice_id=row.invoice_id,
                    number=row.number,
                    kind=row.kind,
                    customer_id=row.customer_id,
                    period=str(Period(row.period_start.year, row.period_start.month)),
                    currency=row.currency,
                    total=row.total,
                    status=row.status,
                    attempts=row.attempts,
                    reason=row.last_error,
                    next_attempt_at=as_utc(row.next_attempt_at)
                    if row.status == "pending" and row.next_attempt_at is not None
                    else None,
                    waiting_since=since,
                    age_seconds=max(0, int((now - since).total_seconds())),
                    in_flight=row.status == "pending" and lease is not None and lease > now,
                    exception_id=row.exception_id,
                )
            )
        return items, len(rows) > limit
