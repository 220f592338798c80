"""Usage ingest: time policy, exact deduplication by (source, id), matching against the
CRM and billing engine, a durable commit before the answer, per-event results.

The checks that need no database run here, per request; storing runs in the event sink
(a group commit in this process, or a Redis stream consumed by any process), where the
database's unique (source, id) decides what is new. Unmatched events (unknown customer
or event type) are stored and raised as exceptions in the same transaction; billing
picks them up once the mapping exists."""

from __future__ import annotations

from datetime import UTC
from typing import Literal, Protocol

from cachetools import TTLCache

from canonical import correlation
from canonical.model import Base
from canonical.time import utcnow
from process_apis.exceptions.service import ExceptionService
from process_apis.usage.batch import CommitOutcome, PendingBatch
from process_apis.usage.formats import ReceivedEvent
from process_apis.usage.policy import EventTimePolicy
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["EventResult", "EventSink", "IngestResult", "UsageService"]

# Known customers and event types are remembered this long; unknown ones are asked
# again every time, so a new mapping is used by the next request.
KNOWN_TTL_SECONDS = 60.0


class EventResult(Base, gc=False):
    index: int
    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    # rejected: why (event_too_old, event_in_future, invalid_text); accepted:
    # period_invoiced when the event is stored and marked for adjustment.
    reason: str | None = None


class IngestResult(Base):
    accepted: int
    duplicates: int
    rejected: int
    unmatched: int
    adjustments: int
    results: list[EventResult]


class EventSink(Protocol):
    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store the batch durably; answers after the commit."""


class UsageService:
    def __init__(
        self,
        sink: EventSink,
        crm: CrmPort,
        billing: BillingPort,
        exceptions: ExceptionService,
        policy: EventTimePolicy | None = None,
    ) -> None:
        self._sink = sink
        self._crm = crm
        self._billing = billing
        self._exceptions = exceptions
        self._policy = policy or EventTimePolicy()
        self._known_customers: TTLCache[str, bool] = TTLCache(100_000, KNOWN_TTL_SECONDS)
        self._known_types: TTLCache[str, bool] = TTLCache(10_000, KNOWN_TTL_SECONDS)

    async def rematch(self) -> int:
        """Close the unknown-customer and unknown-event-type exceptions whose mapping now
        exists; their events, already stored, are billed by the next run. Returns how
        many exceptions were closed."""
        customers = await self._exceptions.open_subjects("unknown_customer")
        event_types = await self._exceptions.open_subjects("unknown_event_type")
        known_customers = await self._crm.known_customer_ids(customers) if customers else set()
        known_types = (
            set(await self._billing.meters_for_event_types(event_types)) if event_types else set()
        )
        closed = await self._exceptions.resolve_subjects("unknown_customer", known_customers)
        return closed + await self._exceptions.resolve_subjects("unknown_event_type", known_types)

    async def ingest(self, events: list[ReceivedEvent], *, screen_nul: bool = True) -> IngestResult:
        """Store the new events of a request; per-event results in request order.
        ``screen_nul=False`` when the body is known to hold no ``\\u0000`` escape."""
        received_at = utcnow()
        oldest, newest = self._policy.window(received_at)
        results: list[EventResult | None] = [None] * len(events)
        seen: set[tuple[str, str]] = set()
        rejected = 0
        positions: list[int] = []  # request index of each candidate
        candidates: list[ReceivedEvent] = []
        for index, event in enumerate(events):
            timestamp = event.timestamp
            if timestamp is None:
                event.timestamp = timestamp = received_at
            elif timestamp.tzinfo is not UTC:
                event.timestamp = timestamp = timestamp.astimezone(UTC)
            key = (event.source, event.id)
            if timestamp < oldest:
                results[index] = EventResult(index, event.id, "rejected", "event_too_old")
                rejected += 1
            elif timestamp > newest:
                results[index] = EventResult(index, event.id, "rejected", "event_in_future")
                rejected += 1
            elif screen_nul and _has_nul(event):
                results[index] = EventResult(index, event.id, "rejected", "invalid_text")
                rejected += 1
            elif key in seen:
                results[index] = EventResult(index, event.id, "duplicate")
            else:
                seen.add(key)
                positions.append(index)
                candidates.append(event)

        outcome = CommitOutcome([])
        unmatched = 0
        if candidates:
            unknown_customers = await _lookup(
                {e.customer_id for e in candidates},
                self._known_customers,
                self._crm.known_customer_ids,
            )
            unknown_types = await _lookup(
                {e.event_type for e in candidates}, self._known_types, self._billing_known_types
            )
            batch = PendingBatch(
                received_at,
                correlation.current(),
                candidates,
                sorted(unknown_customers),
                sorted(unknown_types),
            )
            # Acknowledged only after this returns, i.e. after the durable commit.
            outcome = await self._sink.submit(batch)
            if unknown_customers or unknown_types:
                unmatched = sum(
                    1
                    for p in outcome.inserted
                    if candidates[p].customer_id in unknown_customers
                    or candidates[p].event_type in unknown_types
                )

        accepted = len(outcome.inserted)
        if accepted == len(candidates) and not outcome.adjustments:
            for index in positions:  # the usual case: all new
                results[index] = EventResult(index, events[index].id, "accepted")
        else:
            stored = set(outcome.inserted)
            adjusted = set(outcome.adjustments)
            for position, index in enumerate(positions):
                if position in stored:
                    reason = "period_invoiced" if position in adjusted else None
                    results[index] = EventResult(index, events[index].id, "accepted", reason)
                else:
                    results[index] = EventResult(index, events[index].id, "duplicate")
        return IngestResult(
            accepted=accepted,
            duplicates=len(events) - accepted - rejected,
            rejected=rejected,
            unmatched=unmatched,
            adjustments=len(outcome.adjustments),
            results=results,  # every slot is set above
        )

    async def _billing_known_types(self, event_types: set[str]) -> set[str]:
        return set(await self._billing.meters_for_event_types(event_types))


async def _lookup(names: set[str], known: TTLCache, ask) -> set[str]:
    """The names that are unknown: those not remembered as known are asked for."""
    missing = {name for name in names if name not in known}
    if not missing:
        return set()
    found = await ask(missing)
    for name in found:
        known[name] = True
    return missing - set(found)


def _has_nul(event: ReceivedEvent) -> bool:
    """NUL cannot be stored in PostgreSQL text and is never meaningful in an id."""
    return (
        "\x00" in event.id
        or "\x00" in event.source
        or "\x00" in event.customer_id
        or "\x00" in event.event_type
    )
