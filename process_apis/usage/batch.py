"""What ingest hands to the durable store, and what the store answers: one request's new
events, already checked against the time policy, deduplicated within the request and
matched against the CRM and billing engine. msgspec structs, so a batch can also travel
through a Redis stream to another process (see ``streams``)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from process_apis.usage.formats import ReceivedEvent

__all__ = ["CommitOutcome", "PendingBatch"]


class PendingBatch(msgspec.Struct, array_like=True, gc=False):
    received_at: datetime
    correlation_id: str | None
    # Every event has its timestamp set (receipt time when it came without one), in UTC.
    events: list[ReceivedEvent]
    # Customers and event types of these events that the CRM and billing engine do not
    # know: such events are stored unmatched and raised as exceptions.
    unknown_customers: list[str] = []
    unknown_event_types: list[str] = []

    @property
    def size(self) -> int:
        return len(self.events)


class CommitOutcome(msgspec.Struct, array_like=True, gc=False):
    """Positions (in ``PendingBatch.events``) stored now; the others were stored before.
    ``adjustments``: stored events whose billing period was already invoiced."""

    inserted: list[int]
    adjustments: list[int] = []
