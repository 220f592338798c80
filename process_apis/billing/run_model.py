"""What a billing run looks like from outside: its status and counts, some saved as it
goes (``Progress``), the others read from the outbox whenever the run is read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
import sqlalchemy as sa

from canonical.model import Base
from process_apis.tables import invoices, postings

__all__ = ["BillingRun", "Progress", "RunCounts", "RunStatus", "outbox_counts", "run_of"]

RunStatus = Literal["queued", "running", "completed", "failed"]


class RunCounts(Base):
    subscriptions: int = 0  # in the run's scope
    rated: int = 0  # gone through rating so far (billed, skipped or held)
    invoiced: int = 0  # documents this run wrote
    skipped: int = 0  # already billed by an earlier run, or nothing to bill
    held: int = 0  # billing raised an exception for finance (see /process/exceptions)
    corrected: int = 0  # memos issued for late usage of periods already invoiced
    posted: int = 0  # of this run's documents, posted to the ERP
    pending: int = 0  # ... waiting in the outbox
    failed: int = 0  # ... whose posting failed for good (an exception says why)


class BillingRun(Base):
    id: str
    period: str
    status: RunStatus
    customer_ids: list[str] | None
    counts: RunCounts
    correlation_id: str | None
    created_at: datetime
    completed_at: datetime | None
    error: str | None = None


class Progress(msgspec.Struct):
    """What a run stores as it goes; the outbox counts are read at each ``get``."""

    subscriptions: int = 0
    rated: int = 0
    invoiced: int = 0
    skipped: int = 0
    held: int = 0
    corrected: int = 0


async def outbox_counts(session, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run, its documents by outbox status (pending, posted, failed)."""
    if not run_ids:
        return {}
    rows = await session.execute(
        sa.select(invoices.c.run_id, postings.c.status, sa.func.count())
        .join(postings, postings.c.invoice_id == invoices.c.id)
        .where(invoices.c.run_id.in_(run_ids))
        .group_by(invoices.c.run_id, postings.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for run_id, status, count in rows:
        counts.setdefault(run_id, {})[status] = count
    return counts


def run_of(row, outbox: dict[str, int]) -> BillingRun:
    progress = msgspec.convert(row.counts, Progress)
    return BillingRun(
        id=row.id,
        period=row.period,
        status=row.status,
        customer_ids=row.customer_ids,
        counts=RunCounts(
            **msgspec.structs.asdict(progress),
            posted=outbox.get("posted", 0),
            pending=outbox.get("pending", 0),
            failed=outbox.get("failed", 0),
        ),
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        completed_at=row.completed_at,
        error=row.error,
    )
