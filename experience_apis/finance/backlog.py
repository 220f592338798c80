"""The ERP posting backlog as finance reads it: each document the outbox has not
delivered (``process_apis.posting.backlog``), with how long it has waited, whether a
worker holds it right now and when it is tried again by itself."""

from __future__ import annotations

from datetime import datetime

from canonical.time import Period
from experience_apis.finance.views import BacklogItem
from process_apis.posting.backlog import BacklogEntry

__all__ = ["backlog_item"]


def backlog_item(entry: BacklogEntry, now: datetime) -> BacklogItem:
    pending = entry.status == "pending"
    return BacklogItem(
        invoice_id=entry.invoice_id,
        number=entry.number,
        kind=entry.kind,
        customer_id=entry.customer_id,
        period=str(Period(entry.period_start.year, entry.period_start.month)),
        currency=entry.currency,
        total=entry.total,
        status=entry.status,
        attempts=entry.attempts,
        reason=entry.last_error,
        # A failed document is not tried again by itself: finance retries its exception.
        next_attempt_at=entry.next_attempt_at if pending else None,
        waiting_since=entry.waiting_since,
        age_seconds=max(0, int((now - entry.waiting_since).total_seconds())),
        in_flight=pending and entry.lease_until is not None and entry.lease_until > now,
        exception_id=entry.exception_id,
    )
