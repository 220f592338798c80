"""Usage ingest: time policy, exact deduplication by (source, id), matching against the
CRM and billing engine, one durable commit per batch, per-event results.

Unmatched events (unknown customer or event type) are stored and raised as exceptions
in the same transaction; billing picks them up once the mapping exists."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Literal

from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation
from canonical.model import Base
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.exceptions.service import ExceptionService, raise_exception
from process_apis.tables import usage_events
from process_apis.usage.formats import IngestEvent
from process_apis.usage.policy import EventTimePolicy
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort

__all__ = ["EventResult", "IngestResult", "UsageService"]


class EventResult(Base):
    index: int
    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class IngestResult(Base):
    accepted: int
    duplicates: int
    rejected: int
    unmatched: int
    results: list[EventResult]


def _is_sqlite(sessions: async_sessionmaker) -> bool:
    bind = sessions.kw.get("bind")
    return bind is not None and bind.dialect.name == "sqlite"


class UsageService:
    def __init__(
        self,
        sessions: async_sessionmaker,
        crm: CrmPort,
        billing: BillingPort,
        exceptions: ExceptionService,
        policy: EventTimePolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._crm = crm
        self._billing = billing
        self._exceptions = exceptions
        self._policy = policy or EventTimePolicy()
        # SQLite allows one writer: waiting on a process-local lock is far cheaper than
        # colliding on the database lock and backing off (busy_timeout polling).
        self._write_lock = asyncio.Lock() if _is_sqlite(sessions) else contextlib.nullcontext()

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

    async def ingest(self, events: list[IngestEvent]) -> IngestResult:
        received_at = utcnow()
        corr = correlation.current()
        results: list[EventResult | None] = [None] * len(events)
        seen: set[tuple[str, str]] = set()
        candidates: list[tuple[int, IngestEvent]] = []
        for index, event in enumerate(events):
            key = (event.source, event.id)
            timestamp = event.timestamp or received_at
            reason = self._policy.reject_reason(timestamp, received_at)
            if reason:
                results[index] = EventResult(index, event.id, "rejected", reason)
            elif key in seen:
                results[index] = EventResult(index, event.id, "duplicate")
            else:
                seen.add(key)
                candidates.append((index, event))

        known_customers = await self._crm.known_customer_ids({e.customer_id for _, e in candidates})
        known_types = await self._billing.meters_for_event_types(
            {e.event_type for _, e in candidates}
        )
        rows = []
        for _, event in candidates:
            matched = event.customer_id in known_customers and event.event_type in known_types
            rows.append(
                {
                    "source": event.source,
                    "event_id": event.id,
                    "event_type": event.event_type,
                    "customer_id": event.customer_id,
                    "timestamp": event.timestamp or received_at,
                    "properties": event.properties,
                    "received_at": received_at,
                    "correlation_id": corr,
                    "matched": 1 if matched else 0,
                }
            )

        inserted: set[tuple[str, str]] = set()
        async with self._write_lock, self._sessions.begin() as session:
            if rows:
                stmt = insert_ignore(
                    usage_events, session.bind.dialect.name, ["source", "event_id"]
                ).returning(usage_events.c.source, usage_events.c.event_id)
                inserted = {(r[0], r[1]) for r in await session.execute(stmt, rows)}
            stored = [e for _, e in candidates if (e.source, e.id) in inserted]
            unknown_customers = Counter(
                e.customer_id for e in stored if e.customer_id not in known_customers
            )
            unknown_types = Counter(
                e.event_type
                for e in stored
                if e.customer_id in known_customers and e.event_type not in known_types
            )
            for customer_id, count in unknown_customers.items():
                await raise_exception(
                    session,
                    "unknown_customer",
                    customer_id,
                    f"usage received for unknown customer {customer_id}; it is kept and "
                    "billed once the customer exists in the CRM",
                    {"customer_id": customer_id},
                    occurrences=count,
                )
            for event_type, count in unknown_types.items():
                await raise_exception(
                    session,
                    "unknown_event_type",
                    event_type,
                    f"usage received with event type {event_type!r} that no meter measures; "
                    "it is kept and billed once a meter exists",
                    {"event_type": event_type},
                    occurrences=count,
                )
        # Acknowledge only now, after the commit above.
        accepted = unmatched = 0
        for index, event in candidates:
            if (event.source, event.id) in inserted:
                accepted += 1
                if event.customer_id not in known_customers or event.event_type not in known_types:
                    unmatched += 1
                results[index] = EventResult(index, event.id, "accepted")
            else:
                results[index] = EventResult(index, event.id, "duplicate")
        duplicates = sum(1 for r in results if r and r.status == "duplicate")
        rejected = len(events) - accepted - duplicates
        return IngestResult(
            accepted=accepted,
            duplicates=duplicates,
            rejected=rejected,
            unmatched=unmatched,
            results=[r for r in results if r is not None],
        )
