"""Aggregation of stored usage events into one quantity per meter and service window.

Semantics per meter aggregation: ``sum`` / ``max`` of a numeric property, ``count`` of
events, ``unique_count`` of distinct property values, ``latest`` value by event time.
Events whose property is missing or not numeric do not contribute to sum/max/latest.
Every stored event counts, ``matched`` or not: an event whose customer or meter appeared
after it arrived is billed by the next run (reconciliation reads them the same way).

Three implementations of the one definition:

- ``aggregate``: one customer, its events read into Python. The reference, used by
  reconciliation, and by a run for the rare window SQL cannot reproduce exactly.
- ``aggregate_windows``: many customers' windows at once, in SQL: one query per window,
  event type and block of customers, grouped by customer, through the (customer, type,
  time) index. A run costs a few hundred queries however many events there are, and its
  memory does not grow with them.
- ``aggregate_days``: the same, for every UTC day of a span: one query per event type
  and block of customers, grouped by customer and day, where a window per day would
  cost a query per day.

SQL reproduces the reference exactly for the values it reads exactly: JSON integers of
up to 17 characters (summed in two 32-bit halves: SQLite's SUM overflows rather than
widens), reals for ``max`` and ``latest`` (parsed by SQLite's JSON functions or
``float8``, which round as Python does), strings without escapes for ``unique_count``.
Each query also counts, per group, the values outside that set (strings that may hold
numbers, long integers, reals in a sum, nulls and objects in a distinct count); a
customer's window (or day) with any is aggregated again by ``aggregate``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.model import Meter
from canonical.money import ZERO
from canonical.persistence import UTCDateTime
from canonical.time import midnight
from process_apis.tables import usage_events

__all__ = [
    "MeterQuantity",
    "UsageWindow",
    "aggregate",
    "aggregate_days",
    "aggregate_windows",
    "billed_events",
    "event_day",
    "quantity_of",
    "read_day",
    "window_filter",
]


class MeterQuantity(msgspec.Struct, frozen=True):
    meter_code: str
    event_type: str
    quantity: Decimal
    event_count: int


class UsageWindow(msgspec.Struct, frozen=True):
    """A customer's events in [start, end)."""

    customer_id: str
    start: datetime
    end: datetime


def _number(value) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def window_filter(customer_id: str, event_type: str, start: datetime, end: datetime):
    """The events behind a line: the customer's events of a type in [start, end)."""
    return sa.and_(
        usage_events.c.customer_id == customer_id,
        usage_events.c.event_type == event_type,
        usage_events.c.timestamp >= start,
        usage_events.c.timestamp < end,
    )


def billed_events(
    customer_id: str,
    event_type: str,
    start: datetime,
    end: datetime,
    kind: str,
    document_id: str,
    voided_at: datetime | None = None,
):
    """The events a document's line of ``event_type`` bills, in the line's service window
    [start, end). An invoice's are those the run aggregated: every event of the window
    stored on time, ``matched`` or not (as aggregation reads them); not the late ones
    (flagged on arrival, billed by a memo), nor those received after it was voided
    (``voided_at``: a void invoice makes no event late, so they arrive flagged on time).
    A memo's are the late ones it corrected. A credit memo reversing a void bills its
    invoice's events: pass that invoice's kind, id and void time."""
    if kind != "invoice":
        return sa.and_(
            window_filter(customer_id, event_type, start, end),
            usage_events.c.corrected_by == document_id,
        )
    billed = [window_filter(customer_id, event_type, start, end), usage_events.c.adjustment == 0]
    if voided_at is not None:
        billed.append(usage_events.c.received_at < voided_at)
    return sa.and_(*billed)


async def aggregate(
    session: AsyncSession,
    customer_id: str,
    meters: list[Meter],
    start: datetime,
    end: datetime,
) -> dict[str, MeterQuantity]:
    by_type: dict[str, list[Meter]] = {}
    for meter in meters:
        by_type.setdefault(meter.event_type, []).append(meter)
    out: dict[str, MeterQuantity] = {}
    for event_type, type_meters in by_type.items():
        rows = (
            await session.execute(
                sa.select(usage_events.c.timestamp, usage_events.c.properties).where(
                    window_filter(customer_id, event_type, start, end)
                )
            )
        ).all()
        for meter in type_meters:
            out[meter.code] = MeterQuantity(
                meter.code, event_type, quantity_of(meter, rows), len(rows)
            )
    return out


def quantity_of(meter: Meter, rows) -> Decimal:
    if meter.aggregation == "count":
        return Decimal(len(rows))
    field = meter.field or ""
    if meter.aggregation == "unique_count":
        return Decimal(
            len(
                {
                    msgspec.json.encode(r.properties.get(field))
                    for r in rows
                    if field in r.properties
                }
            )
        )
    values = [(r.timestamp, n) for r in rows if (n := _number(r.properties.get(field))) is not None]
    if not values:
        return ZERO
    if meter.aggregation == "sum":
        return sum((n for _, n in values), ZERO)
    if meter.aggregation == "max":
        return max(n for _, n in values)
    # latest: the value of the event with the latest event time
    return max(values, key=lambda pair: pair[0])[1]


# --- in SQL, many customers at once ------------------------------------------------------


class _Dialect(msgspec.Struct, frozen=True):
    """The backend's SQL for the JSON text ``x`` of one property (``properties -> key``:
    numbers and strings exactly as stored, NULL when absent)."""

    value: str  # the property's JSON text; :p<k> is its path (SQLite) or key (PostgreSQL)
    source: str  # the window's events (the rows of ``_WHERE``)
    barrier: str  # keeps a subquery from being inlined, so each value is computed once
    numeric: str
    integral: str  # given numeric: no fraction or exponent
    string: str
    escaped: str
    int_value: str
    real_value: str
    latest: str  # per group, "<time> <x>" (or "<x>") of its latest event with a number
    day: str  # an event's UTC day, whatever the session's time zone
    customers: int  # per query
    setup: str | None = None  # run before the queries, in their transaction


_WHERE = (
    "customer_id IN :customers AND event_type = :event_type "
    "AND timestamp >= :start AND timestamp < :end"
)
_DIALECTS = {
    # Rows are read in rowid order (the index gives the rowids; events are stored in
    # arrival order, customers interleaved): about a third cheaper than in index order.
    "sqlite": _Dialect(
        value="properties -> :p{k}",
        source=f"rowid IN (SELECT rowid FROM usage_events WHERE {_WHERE})",
        barrier="LIMIT -1",
        numeric="{x} GLOB '[0-9-]*'",
        integral="{x} NOT GLOB '*[.eE]*'",
        string="{x} GLOB '\"*'",
        escaped="instr({x}, '\\') > 0",
        int_value="CAST({x} AS INTEGER)",
        real_value="json_extract({x}, '$')",
        # Times are stored fixed-width, so the greatest text is the latest event's.
        latest="MAX(CASE WHEN {c} IN (1, 3) THEN timestamp || ' ' || {x} END)",
        day="substr(timestamp, 1, 10)",  # stored as UTC text, YYYY-MM-DD HH:MM:SS.ffffff
        customers=500,
    ),
    # Larger blocks: the planner reads the table in one parallel scan per query. JIT
    # would compile each query for longer than it runs.
    "postgresql": _Dialect(
        value="CAST(CAST(properties AS JSON) -> CAST(:p{k} AS TEXT) AS TEXT)",
        source=_WHERE,
        barrier="OFFSET 0",
        numeric="{x} ~ '^-?[0-9]'",
        integral="{x} ~ '^-?[0-9]+$'",
        string="left({x}, 1) = '\"'",
        escaped="strpos({x}, '\\') > 0",
        int_value="CAST({x} AS BIGINT)",
        real_value="CAST({x} AS FLOAT8)",
        latest="(array_agg({x} ORDER BY timestamp DESC) FILTER (WHERE {c} IN (1, 3)))[1]",
        # A date, not text: a date's text follows the session's DateStyle.
        day="CAST(timestamp AT TIME ZONE 'UTC' AS DATE)",
        customers=2000,
        setup="SET LOCAL jit = off",
    ),
}


def event_day(dialect: str):
    """An event's UTC day (``usage_events.timestamp``), whatever the session's time zone:
    the day ``aggregate_days`` groups by, for other reads of events by day. Read its
    values with ``read_day``."""
    return sa.literal_column(_DIALECTS[dialect].day)


def read_day(value) -> date:
    """A value of ``event_day``: a date on PostgreSQL, its ISO text on SQLite."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def _class(d: _Dialect, k: int) -> str:
    """The class of property ``k``'s value, computed once per event: 0 absent, 1 an
    integer that fits 64 bits (17 characters at most), 2 a longer one, 3 a real, 4 a
    string without escapes, 5 one with, 6 anything else (true, false, null, object,
    array)."""
    x = f"x{k}"
    return (
        f"CASE WHEN {x} IS NULL THEN 0 WHEN {d.numeric.format(x=x)} THEN "
        f"CASE WHEN {d.integral.format(x=x)} THEN CASE WHEN length({x}) <= 17 THEN 1 "
        f"ELSE 2 END ELSE 3 END WHEN {d.string.format(x=x)} THEN "
        f"CASE WHEN {d.escaped.format(x=x)} THEN 5 ELSE 4 END ELSE 6 END AS c{k}"
    )


def _numbers(d: _Dialect, k: int) -> str:
    """The integer of class 1 and the real of class 3 (else NULL), apart: one column
    of both types would turn the integers into floats on PostgreSQL."""
    x = f"x{k}"
    return (
        f"CASE WHEN c{k} = 1 THEN {d.int_value.format(x=x)} END AS i{k}, "
        f"CASE WHEN c{k} = 3 THEN {d.real_value.format(x=x)} END AS r{k}"
    )


# Per aggregation: its columns in the grouped query (x: the JSON text, c: its class, i
# and r: its number), the last counting the values SQL does not reproduce exactly.
_COLUMNS = {
    "sum": [
        "SUM({i} >> 32)",  # in halves: SQLite's SUM overflows rather than widens
        "SUM({i} & 4294967295)",
        "SUM(CASE WHEN {c} IN (2, 3, 4, 5) THEN 1 ELSE 0 END)",
    ],
    "max": ["MAX({i})", "MAX({r})", "SUM(CASE WHEN {c} IN (2, 4, 5) THEN 1 ELSE 0 END)"],
    "unique_count": [
        "COUNT(DISTINCT CASE {c} WHEN 1 THEN 'i' || {i} WHEN 4 THEN {x} END)",
        "SUM(CASE WHEN {c} IN (2, 3, 5, 6) THEN 1 ELSE 0 END)",
    ],
    "latest": ["{latest}", "SUM(CASE WHEN {c} IN (2, 4, 5) THEN 1 ELSE 0 END)"],
}
_WIDTHS = {"count": 0} | {aggregation: len(c) for aggregation, c in _COLUMNS.items()}


@functools.lru_cache(maxsize=64)
def _grouped_sql(
    dialect: str, specs: tuple[tuple[str, str], ...], by_day: bool = False
) -> tuple[str, list[str]]:
    """The query grouping one event type's events in a window by customer (and by UTC
    day, its second column, when ``by_day``), for meters ``specs`` ((field, aggregation)
    each), and the fields its ``:p<k>`` name. Each event's properties are looked up and
    classified once, in nested subqueries."""
    d = _DIALECTS[dialect]
    keys, group = ("customer_id", f"{d.day} AS day"), "1, 2"
    keys, group = (keys, group) if by_day else (keys[:1], "1")
    fields = sorted({field for field, aggregation in specs if aggregation != "count"})
    if not fields:  # counts only: answered from the index alone
        head = ", ".join([*keys, "COUNT(*)"])
        return f"SELECT {head} FROM usage_events WHERE {_WHERE} GROUP BY {group}", []
    ks = range(len(fields))
    rows = ", ".join(f"{d.value.format(k=k)} AS x{k}" for k in ks)
    rows = f"SELECT customer_id, timestamp, {rows} FROM usage_events WHERE {d.source}"
    classes = ", ".join(f"x{k}, {_class(d, k)}" for k in ks)
    rows = f"SELECT customer_id, timestamp, {classes} FROM ({rows} {d.barrier}) AS e"
    numbers = ", ".join(f"x{k}, c{k}, {_numbers(d, k)}" for k in ks)
    rows = f"SELECT customer_id, timestamp, {numbers} FROM ({rows} {d.barrier}) AS e"
    columns = []
    for field, aggregation in specs:
        if aggregation != "count":
            k = fields.index(field)
            names = {"x": f"x{k}", "c": f"c{k}", "i": f"i{k}", "r": f"r{k}"}
            latest = d.latest.format(**names)
            columns += [c.format(latest=latest, **names) for c in _COLUMNS[aggregation]]
    head = ", ".join([*keys, "COUNT(*)", *columns])
    return f"SELECT {head} FROM ({rows} {d.barrier}) AS e GROUP BY {group}", fields


def _statement(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(
        sa.bindparam("customers", expanding=True),
        sa.bindparam("start", type_=UTCDateTime()),
        sa.bindparam("end", type_=UTCDateTime()),
    )


def _result(aggregation: str, count: int, values: tuple) -> Decimal | None:
    """A meter's quantity from its columns in a customer's row; None when not exact."""
    if aggregation == "count":
        return Decimal(count)
    if values[-1]:
        return None
    if aggregation == "sum":
        return Decimal(int(values[0] or 0) * 2**32 + int(values[1] or 0))
    if aggregation == "max":
        found = [Decimal(values[0])] if values[0] is not None else []
        if values[1] is not None:
            found.append(Decimal(str(values[1])))
        return max(found) if found else ZERO
    if aggregation == "latest":  # the JSON number, decoded as the reference decodes it
        if values[0] is None:
            return ZERO
        return _number(msgspec.json.decode(values[0].rsplit(" ", 1)[-1])) or ZERO
    return Decimal(values[0])  # unique_count


# Per (customer, event type) with events: their count, and per meter its quantity.
_Found = dict[tuple[str, str], tuple[int, dict[str, Decimal | None]]]


class _Group(msgspec.Struct, frozen=True):
    """One row of a grouped query: a customer's events (of one day, when by day)."""

    customer_id: str
    day: date | None
    count: int
    quantities: dict[str, Decimal | None]  # per meter; None when not exact


async def _grouped(
    session: AsyncSession,
    event_type: str,
    meters: list[Meter],
    customers: list[str],
    span: tuple[datetime, datetime],
    by_day: bool = False,
) -> list[_Group]:
    dialect = session.bind.dialect.name
    specs = tuple((m.field or "", m.aggregation) for m in meters)
    sql, fields = _grouped_sql(dialect, specs, by_day)
    params = {"customers": customers, "event_type": event_type, "start": span[0], "end": span[1]}
    for k, field in enumerate(fields):
        # A key, not a path: a field "a.b" is the top-level key "a.b", as in Python.
        params[f"p{k}"] = f'$."{field}"' if dialect == "sqlite" else field
    groups = []
    keys = 2 if by_day else 1
    for row in await session.execute(_statement(sql), params):
        count, quantities, at = row[keys], {}, keys + 1
        for meter in meters:
            width = _WIDTHS[meter.aggregation]
            quantities[meter.code] = _result(meter.aggregation, count, tuple(row[at : at + width]))
            at += width
        day = None
        if by_day:  # a date on PostgreSQL, its ISO text on SQLite
            day = read_day(row[1])
        groups.append(_Group(row[0], day, count, quantities))
    return groups


def _by_type(meters: Iterable[Meter]) -> dict[str, list[Meter]]:
    """Meters per event type, each type's by code: one query text per set of meters."""
    by_type: dict[str, list[Meter]] = defaultdict(list)
    for meter in sorted({m.code: m for m in meters}.values(), key=lambda m: m.code):
        by_type[meter.event_type].append(meter)
    return by_type


async def aggregate_windows(
    session: AsyncSession, wanted: Mapping[UsageWindow, Iterable[Meter]]
) -> dict[UsageWindow, dict[str, MeterQuantity]]:
    """For each window, each of its meters' quantity, as ``aggregate`` gives it."""
    d = _DIALECTS[session.bind.dialect.name]
    if d.setup:
        await session.execute(sa.text(d.setup))
    windows = {window: list(meters) for window, meters in wanted.items()}
    queries: dict[tuple[datetime, datetime, str], tuple[set[str], dict[str, Meter]]] = {}
    for window, meters in windows.items():
        for meter in meters:
            key = (window.start, window.end, meter.event_type)
            customers, by_code = queries.setdefault(key, (set(), {}))
            customers.add(window.customer_id)
            by_code[meter.code] = meter
    found: dict[tuple[datetime, datetime], _Found] = defaultdict(dict)
    for (start, end, event_type), (customers, by_code) in queries.items():
        meters = sorted(by_code.values(), key=lambda m: m.code)
        ordered = sorted(customers)
        for i in range(0, len(ordered), d.customers):
            block = ordered[i : i + d.customers]
            for g in await _grouped(session, event_type, meters, block, (start, end)):
                found[start, end][g.customer_id, event_type] = (g.count, g.quantities)
    return {
        window: await _window(session, window, meters, found[window.start, window.end])
        for window, meters in windows.items()
    }


async def aggregate_days(
    session: AsyncSession,
    customers: Iterable[str],
    meters: Iterable[Meter],
    start: date,
    end: date,
) -> dict[UsageWindow, dict[str, MeterQuantity]]:
    """For each customer and each UTC day in [start, end), the day's window (midnight to
    midnight) and each meter's quantity in it, as ``aggregate`` gives it: per event
    type, one query groups the whole span by customer and day. A day's ``max``,
    ``unique_count`` and ``latest`` are that day's alone; over several days they do not
    combine into the span's, which takes a window of its own (``aggregate_windows``)."""
    meters, ordered = list(meters), sorted(set(customers))
    if end <= start or not ordered:
        return {}
    d = _DIALECTS[session.bind.dialect.name]
    if d.setup:
        await session.execute(sa.text(d.setup))
    span = (midnight(start), midnight(end))
    found: dict[date, _Found] = defaultdict(dict)
    for event_type, type_meters in _by_type(meters).items():
        for i in range(0, len(ordered), d.customers):
            block = ordered[i : i + d.customers]
            for g in await _grouped(session, event_type, type_meters, block, span, by_day=True):
                found[g.day][g.customer_id, event_type] = (g.count, g.quantities)
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    out: dict[UsageWindow, dict[str, MeterQuantity]] = {}
    for customer in ordered:
        for day in days:
            window = UsageWindow(customer, midnight(day), midnight(day + timedelta(days=1)))
            out[window] = await _window(session, window, meters, found.get(day, {}))
    return out


async def _window(
    session: AsyncSession, window: UsageWindow, meters: list[Meter], found: _Found
) -> dict[str, MeterQuantity]:
    """One window's quantities from its groups; an inexact group from ``aggregate``."""
    out: dict[str, MeterQuantity] = {}
    for event_type in sorted({m.event_type for m in meters}):
        mine = [m for m in meters if m.event_type == event_type]
        count, values = found.get((window.customer_id, event_type), (0, {}))
        if not count:  # no events: every aggregation gives 0
            out |= {m.code: MeterQuantity(m.code, event_type, ZERO, 0) for m in mine}
        elif any(values[m.code] is None for m in mine):
            out |= await aggregate(session, window.customer_id, mine, window.start, window.end)
        else:
            out |= {m.code: MeterQuantity(m.code, event_type, values[m.code], count) for m in mine}
    return out
