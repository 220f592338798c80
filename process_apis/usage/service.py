"""Usage ingest: time policy, exact deduplication by (source, id), matching against the
CRM and billing engine, one durable commit per batch, per-event results.

Unmatched events (unknown customer or event type) are stored and raised as exceptions
in the same transaction; billing picks them up once the mapping exists."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation
from canonical.model import Base
from canonical.persistence import insert_ignore
from canonical.time import utcnow
from process_apis.exceptions.service import ExceptionService, raise_exceptions
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
        results: list[EventResult | None] = [None] * len(events)
        seen: set[tuple[str, str]] = set()
        candidates: list[tuple[int, IngestEvent]] = []
        for index, event in enumerate(events):
            key = (event.source, event.id)
            reason = self._policy.reject_reason(event.timestamp or received_at, received_at)
            if reason:
                results[index] = EventResult(index, event.id, "rejected", reason)
            elif key in seen:
                results[index] = EventResult(index, event.id, "duplicate")
            else:
                seen.add(key)
                candidates.append((index, event))

        inserted = await self._store([e for _, e in candidates], received_at) if candidates else {}
        # Acknowledge only now, after the commit in ``_store``.
        for index, event in candidates:
            status = "accepted" if (event.source, event.id) in inserted else "duplicate"
            results[index] = EventResult(index, event.id, status)
        duplicates = sum(1 for r in results if r and r.status == "duplicate")
        return IngestResult(
            accepted=len(inserted),
            duplicates=duplicates,
            rejected=len(events) - len(inserted) - duplicates,
            unmatched=sum(1 for matched in inserted.values() if not matched),
            results=[r for r in results if r is not None],
        )

    async def _store(
        self, events: list[IngestEvent], received_at: datetime
    ) -> dict[tuple[str, str], bool]:
        """Store the events not stored before, with the exceptions for those that match no
        customer or meter, in one transaction; returns the new ones' keys -> matched."""
        known_customers = await self._crm.known_customer_ids({e.customer_id for e in events})
        known_types = await self._billing.meters_for_event_types({e.event_type for e in events})
        corr = correlation.current()
        # Matched once per event: the stored flag, the exceptions and the counts all use it.
        matched = {
            (e.source, e.id): e.customer_id in known_customers and e.event_type in known_types
            for e in events
        }
        rows = [
            {
                "source": event.source,
                "event_id": event.id,
                "event_type": event.event_type,
                "customer_id": event.customer_id,
                "timestamp": event.timestamp or received_at,
                "properties": event.properties,
                "received_at": received_at,
                "correlation_id": corr,
                "matched": int(matched[event.source, event.id]),
            }
            for event in events
        ]
        async with self._write_lock, self._sessions.begin() as session:
            stmt = insert_ignore(
                usage_events, session.bind.dialect.name, ["source", "event_id"]
            ).returning(usage_events.c.source, usage_events.c.event_id)
            inserted = {(r[0], r[1]) for r in await session.execute(stmt, rows)}
            unmatched = [
                e for e in events if (e.source, e.id) in inserted and not matched[e.source, e.id]
            ]
            # An unmatched event is raised against its customer if that is unknown, else
            # against its event type.
            unknown_customers = Counter(
                e.customer_id for e in unmatched if e.customer_id not in known_customers
            )
            unknown_types = Counter(
                e.event_type for e in unmatched if e.customer_id in known_customers
            )
            await raise_exceptions(
                session,
                "unknown_customer",
                [
                    (
                        customer_id,
                        f"usage received for unknown customer {customer_id}; it is kept and "
                        "billed once the customer exists in the CRM",
                        {"customer_id": customer_id},
                        count,
                    )
                    for customer_id, count in unknown_customers.items()
                ],
            )
            await raise_exceptions(
                session,
                "unknown_event_type",
                [
                    (
                        event_type,
                        f"usage received with event type {event_type!r} that no meter "
                        "measures; it is kept and billed once a meter exists",
                        {"event_type": event_type},
                        count,
                    )
                    for event_type, count in unknown_types.items()
                ],
            )
        return {key: matched[key] for key in inserted}
