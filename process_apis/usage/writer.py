"""Writing batches of new usage events: one multi-row ``INSERT ... ON CONFLICT (source,
event_id) DO NOTHING RETURNING`` per chunk, so the database decides duplicates exactly
(also against other processes) and tells which events are new; events whose period is
already invoiced are flagged for adjustment; events that match no customer or meter
raise exceptions. Everything runs in the caller's transaction.

Synchronous code on a SQLAlchemy ``Connection``: the SQLite group commit runs it in a
writer thread of its own (no event-loop round trip between statements), the PostgreSQL
one through ``AsyncConnection.run_sync``. The statements go to the driver directly
(``exec_driver_sql``): SQLAlchemy's per-row parameter processing would cost more than the
insert itself at ingest rates."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import date

import sqlalchemy as sa

from canonical.persistence import sqlite_datetimes
from process_apis.exceptions.service import exceptions_upsert
from process_apis.tables import invoices
from process_apis.usage.batch import CommitOutcome, PendingBatch

__all__ = ["Prepared", "prepare", "write_batches"]

COLUMNS = (
    "source",
    "event_id",
    "event_type",
    "customer_id",
    "timestamp",
    "properties",
    "received_at",
    "correlation_id",
    "matched",
    "adjustment",
)
# Rows per SQLite statement: 10 parameters each stays well under SQLite's 32,766, and a
# fixed size keeps the prepared statement in the driver's cache.
SQLITE_CHUNK = 1000
# Invoiced (customer, period) pairs are looked up this many customers at a time.
LOOKUP_CHUNK = 500


@functools.lru_cache(maxsize=8)
def _sqlite_insert(rows: int) -> str:
    # No RETURNING: it costs about a fifth of the insert. The writer holds the write lock
    # (BEGIN IMMEDIATE), so the rows count tells whether all are new and, when not, the
    # new ones are those above the highest seq before the batch.
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * rows)
    return (
        f"INSERT INTO usage_events ({','.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT (source, event_id) DO NOTHING"
    )


_SQLITE_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM usage_events"
_SQLITE_STORED_AFTER = "SELECT source, event_id FROM usage_events WHERE seq > ?"


# Rows go in in key order: two transactions inserting the same keys then lock them in
# the same order instead of deadlocking.
_POSTGRES_INSERT = (
    f"INSERT INTO usage_events ({','.join(COLUMNS)}) "
    "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], "
    "$5::timestamptz[], $6::text[], $7::timestamptz[], $8::varchar[], $9::int[], $10::int[]) "
    "ORDER BY 1, 2 "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
)


class Prepared:
    """A batch with what its insert needs, computed before the writer's transaction (in
    the request, concurrently with other requests) so that the single writer spends its
    time in the database: the statement parameters (with ``adjustment`` 0; the rare
    batch touching an invoiced period is prepared again in the transaction), its
    customers and its time span."""

    __slots__ = ("batch", "customers", "dialect", "first", "last", "rows")

    def __init__(self, dialect: str, batch: PendingBatch) -> None:
        self.batch = batch
        self.dialect = dialect
        stamps = [e.timestamp for e in batch.events]
        self.first, self.last = min(stamps), max(stamps)
        self.customers = {e.customer_id for e in batch.events}
        self.rows = _rows(dialect, batch, None)


def prepare(dialect: str):
    """A function preparing batches for ``write_batches`` on ``dialect``."""
    return functools.partial(Prepared, dialect)


def _rows(dialect: str, batch: PendingBatch, adjust: list[bool] | None) -> list[tuple]:
    """Statement parameters: SQLite, one flat tuple per chunk of SQLITE_CHUNK events;
    PostgreSQL, one tuple of column arrays."""
    events = batch.events
    unknown_customers = set(batch.unknown_customers)
    unknown_types = set(batch.unknown_event_types)
    if unknown_customers or unknown_types:
        matched = [
            int(e.customer_id not in unknown_customers and e.event_type not in unknown_types)
            for e in events
        ]
    else:
        matched = [1] * len(events)
    adjustment = [int(flag) for flag in adjust] if adjust else [0] * len(events)
    if dialect == "postgresql":
        return [
            (
                [e.source for e in events],
                [e.id for e in events],
                [e.event_type for e in events],
                [e.customer_id for e in events],
                [e.timestamp for e in events],
                [bytes(e.properties).decode() for e in events],
                [batch.received_at] * len(events),
                [batch.correlation_id] * len(events),
                matched,
                adjustment,
            )
        ]
    received_at = sqlite_datetimes([batch.received_at])[0]
    timestamps = sqlite_datetimes([e.timestamp for e in events])
    corr = batch.correlation_id
    chunks = []
    for start in range(0, len(events), SQLITE_CHUNK):
        params: list = []
        extend = params.extend
        for i in range(start, min(start + SQLITE_CHUNK, len(events))):
            e = events[i]
            extend(
                (
                    e.source,
                    e.id,
                    e.event_type,
                    e.customer_id,
                    timestamps[i],
                    bytes(e.properties).decode(),
                    received_at,
                    corr,
                    matched[i],
                    adjustment[i],
                )
            )
        chunks.append(tuple(params))
    return chunks


def _months(prepared: list[Prepared]) -> list[date]:
    """First days of the months the batches' events fall in (usually one or two)."""
    first = min(p.first for p in prepared)
    last = max(p.last for p in prepared)
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _invoiced_periods(connection: sa.Connection, prepared: list[Prepared]) -> set[tuple[str, date]]:
    """(customer, period start) pairs the batches touch that already have an invoice."""
    customers = sorted(set().union(*(p.customers for p in prepared)))
    months = _months(prepared)
    found: set[tuple[str, date]] = set()
    for start in range(0, len(customers), LOOKUP_CHUNK):
        query = sa.select(invoices.c.customer_id, invoices.c.period_start).where(
            invoices.c.kind == "invoice",
            # A draft (grace window) is re-rated with the period's events: not late.
            invoices.c.status.not_in(("void", "draft")),
            invoices.c.customer_id.in_(customers[start : start + LOOKUP_CHUNK]),
            invoices.c.period_start.in_(months),
        )
        found.update((row[0], row[1]) for row in connection.execute(query))
    return found


def _adjustments(batch: PendingBatch, invoiced: set[tuple[str, date]]) -> list[bool] | None:
    """Per event, whether its period is invoiced; None when none is (the usual case)."""
    if not invoiced:
        return None
    flags = [
        (e.customer_id, date(e.timestamp.year, e.timestamp.month, 1)) in invoiced
        for e in batch.events
    ]
    return flags if any(flags) else None


def _insert(connection: sa.Connection, batch: PendingBatch, rows: list[tuple], last_seq: int):
    """The keys of the events stored now (None when every one was), and how many.
    ``last_seq``: on SQLite, the highest seq before this batch's rows."""
    if connection.dialect.name == "postgresql":
        stored = connection.exec_driver_sql(_POSTGRES_INSERT, rows[0]).all()
        keys = None if len(stored) == batch.size else {(row[0], row[1]) for row in stored}
        return keys, len(stored)
    inserted = sum(
        connection.exec_driver_sql(_sqlite_insert(len(chunk) // 10), chunk).rowcount
        for chunk in rows
    )
    if inserted == batch.size:
        return None, inserted
    after = connection.exec_driver_sql(_SQLITE_STORED_AFTER, (last_seq,))
    return {(row[0], row[1]) for row in after}, inserted


def _raise_unmatched(connection: sa.Connection, batch: PendingBatch, new: list[int]) -> None:
    """One exception per unknown customer, else per unknown event type, counting events."""
    unknown_customers: Counter[str] = Counter()
    unknown_types: Counter[str] = Counter()
    customers, event_types = set(batch.unknown_customers), set(batch.unknown_event_types)
    for i in new:
        event = batch.events[i]
        if event.customer_id in customers:
            unknown_customers[event.customer_id] += 1
        elif event.event_type in event_types:
            unknown_types[event.event_type] += 1
    dialect, corr = connection.dialect.name, batch.correlation_id
    found = {
        "unknown_customer": [
            (
                customer_id,
                f"usage received for unknown customer {customer_id}; it is kept and "
                "billed once the customer exists in the CRM",
                {"customer_id": customer_id},
                count,
            )
            for customer_id, count in unknown_customers.items()
        ],
        "unknown_event_type": [
            (
                event_type,
                f"usage received with event type {event_type!r} that no meter measures; "
                "it is kept and billed once a meter exists",
                {"event_type": event_type},
                count,
            )
            for event_type, count in unknown_types.items()
        ],
    }
    for kind, subjects in found.items():
        if subjects:
            connection.execute(*exceptions_upsert(dialect, kind, subjects, corr))


def write_batches(connection: sa.Connection, prepared: list[Prepared]) -> list[CommitOutcome]:
    """Store each batch's events not stored before, in ``connection``'s transaction, in
    order: of two batches carrying one event, the first stores it."""
    invoiced = _invoiced_periods(connection, prepared)
    # SQLite: the writer holds the write lock, so each batch's rows take the seqs right
    # after the previous batch's: one lookup of the highest seq serves the whole group.
    last_seq = 0
    if connection.dialect.name == "sqlite":
        last_seq = connection.exec_driver_sql(_SQLITE_LAST_SEQ).scalar_one()
    outcomes = []
    for item in prepared:
        batch, rows = item.batch, item.rows
        adjust = _adjustments(batch, invoiced)
        if adjust is not None:
            rows = _rows(item.dialect, batch, adjust)
        stored, inserted = _insert(connection, batch, rows, last_seq)
        last_seq += inserted
        if stored is None:  # the usual case: every event is new
            new = list(range(batch.size))
        else:
            new = [i for i, e in enumerate(batch.events) if (e.source, e.id) in stored]
        if batch.unknown_customers or batch.unknown_event_types:
            _raise_unmatched(connection, batch, new)
        outcomes.append(CommitOutcome(new, [i for i in new if adjust[i]] if adjust else []))
    return outcomes
