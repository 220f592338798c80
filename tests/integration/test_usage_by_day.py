"""Usage aggregated per UTC day in one query per event type (``aggregate_days``), on
SQLite and PostgreSQL: every day of every customer agrees with the reference
``aggregate`` over that day's window, values SQL cannot read exactly included; an event
in the last microsecond of a day and one at midnight land on their own days whatever the
session's time zone; and the portal's usage of a month (``UsageSummaries.period``) costs
a few statements, not one per day, and gives what the reference gives day by day."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.model import Meter
from canonical.time import Period, midnight
from process_apis.billing.aggregation import UsageWindow, aggregate, aggregate_days
from process_apis.usage.summaries import DayUsage, UsageSummaries
from process_apis.usage.terms import CustomerTerms
from system_apis.billing.reference import ReferenceBilling
from tests.support.usage import POOLS, random_properties, store

D = Decimal
FIRST, END = date(2026, 3, 1), date(2026, 3, 8)  # the span: [1 March, 8 March)

CALLS = Meter(id="m1", code="calls", name="c", event_type="api.request", aggregation="count")
TOKENS = Meter(
    id="m2", code="tokens", name="t", event_type="llm.tokens", aggregation="sum", field="tokens"
)
# Two more meters on the same events and property: one query answers all three.
PEAK = Meter(
    id="m3", code="peak", name="p", event_type="llm.tokens", aggregation="max", field="tokens"
)
LAST = Meter(
    id="m4", code="last", name="l", event_type="llm.tokens", aggregation="latest", field="tokens"
)
USERS = Meter(
    id="m5",
    code="users",
    name="u",
    event_type="user.active",
    aggregation="unique_count",
    field="user_id",
)
SEATS = Meter(
    id="m6", code="seats", name="s", event_type="seats", aggregation="latest", field="seats"
)
METERS = [CALLS, TOKENS, PEAK, LAST, USERS, SEATS]


def at(day: int, hour: int = 12, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def day_window(customer: str, day: date) -> UsageWindow:
    return UsageWindow(customer, midnight(day), midnight(day + timedelta(days=1)))


def quantities(found) -> dict[str, tuple[Decimal, int]]:
    return {code: (q.quantity, q.event_count) for code, q in found.items()}


async def test_every_day_agrees_with_the_reference(sessions):
    # cus_a on 3 March, by hand: each value below sends its group to the reference.
    hand = [
        # tokens "15" (a string number) + 2.5 (a real in a sum) + 10 = 27.5; peak 15;
        # last: "15", the day's latest event (the 4th's 99 is another day's).
        ("cus_a", "llm.tokens", at(3, 8), '{"tokens": 2.5}'),
        ("cus_a", "llm.tokens", at(3, 9), '{"tokens": 10}'),
        ("cus_a", "llm.tokens", at(3, 23), '{"tokens": "15"}'),
        ("cus_a", "llm.tokens", at(4, 1), '{"tokens": 99}'),
        # "été" twice, once escaped, and "u1": 2 distinct values, not 3.
        ("cus_a", "user.active", at(3, 8), '{"user_id": "été"}'),
        ("cus_a", "user.active", at(3, 9), '{"user_id": "\\u00e9t\\u00e9"}'),
        ("cus_a", "user.active", at(3, 10), '{"user_id": "u1"}'),
        # The day's latest seats are a string: "11".
        ("cus_a", "seats", at(3, 8), '{"seats": 4.5}'),
        ("cus_a", "seats", at(3, 9), '{"seats": "11"}'),
        # On 5 March, 20 digits, beyond 64 bits: 12345678901234567890 + 1 tokens.
        ("cus_a", "llm.tokens", at(5, 8), '{"tokens": 12345678901234567890}'),
        ("cus_a", "llm.tokens", at(5, 9), '{"tokens": 1}'),
    ]
    rng = random.Random(20260303)
    events = []
    customers = [f"cus_{c}" for c in "bcdefg"]
    for c, customer in enumerate(customers):
        pool = POOLS[c % len(POOLS)]
        for meter in [CALLS, TOKENS, USERS, SEATS]:
            for _ in range(rng.randrange(0, 25)):
                # Distinct times (ties would make "latest" depend on row order), some
                # outside the span.
                moment = midnight(FIRST) + timedelta(
                    days=rng.uniform(-1, 8), microseconds=len(events)
                )
                properties = random_properties(rng, meter.field or "x", pool)
                events.append((customer, meter.event_type, moment, properties, rng.randrange(2)))
    await store(sessions, hand + events)
    asked = ["cus_a", *customers, "cus_none"]  # cus_none has no events at all
    days = [FIRST + timedelta(days=n) for n in range((END - FIRST).days)]

    async with sessions() as session:
        found = await aggregate_days(session, asked, METERS, FIRST, END)
        assert set(found) == {day_window(c, d) for c in asked for d in days}
        assert quantities(found[day_window("cus_a", date(2026, 3, 3))]) == {
            "calls": (0, 0),
            "tokens": (D("27.5"), 3),
            "peak": (15, 3),
            "last": (15, 3),
            "users": (2, 3),
            "seats": (11, 2),
        }
        assert quantities(found[day_window("cus_a", date(2026, 3, 4))])["last"] == (99, 1)
        assert quantities(found[day_window("cus_a", date(2026, 3, 5))]) == {
            "calls": (0, 0),
            "tokens": (12345678901234567891, 2),
            "peak": (12345678901234567890, 2),
            "last": (1, 2),
            "users": (0, 0),
            "seats": (0, 0),
        }
        for window, day_found in found.items():
            reference = await aggregate(
                session, window.customer_id, METERS, window.start, window.end
            )
            assert quantities(day_found) == quantities(reference), window


async def test_events_on_a_day_boundary_land_on_their_own_day(sessions, engine):
    last_moment = timedelta(days=1, microseconds=-1)  # 23:59:59.999999
    await store(
        sessions,
        [
            ("cus_a", "llm.tokens", midnight(FIRST) - timedelta(microseconds=1), '{"tokens": 1}'),
            ("cus_a", "llm.tokens", midnight(FIRST), '{"tokens": 10}'),
            ("cus_a", "llm.tokens", midnight(FIRST) + last_moment, '{"tokens": 200}'),
            ("cus_a", "llm.tokens", midnight(date(2026, 3, 2)), '{"tokens": 3000}'),
            ("cus_a", "llm.tokens", midnight(date(2026, 3, 2)) + last_moment, '{"tokens": 4}'),
            ("cus_a", "llm.tokens", midnight(date(2026, 3, 3)), '{"tokens": 50000}'),
        ],
    )
    async with sessions() as session:
        if engine.dialect.name == "postgresql":
            # UTC+14: midnight UTC is 14:00 there, the day's last microsecond the next day.
            await session.execute(sa.text("SET LOCAL TIME ZONE 'Pacific/Kiritimati'"))
        found = await aggregate_days(session, ["cus_a"], [TOKENS, LAST], FIRST, date(2026, 3, 3))
    assert {w.start.date(): quantities(q) for w, q in found.items()} == {
        # 28 February and 3 March are outside the span.
        date(2026, 3, 1): {"tokens": (210, 2), "last": (200, 2)},
        date(2026, 3, 2): {"tokens": (3004, 2), "last": (4, 2)},
    }


async def test_a_month_of_usage_costs_a_few_statements(sessions, engine):
    period = Period(2026, 3)
    # Exact values only (nothing for the reference to redo), none on 5, 6 and 31 March.
    events = []
    for day in range(1, 32):
        if day in (5, 6, 31):
            continue
        for n in range(day % 4 + 1):
            moment = at(day, n * 5)
            events.append(("cus_a", "llm.tokens", moment, f'{{"tokens": {day * 10 + n}}}'))
            events.append(("cus_a", "api.request", moment, "{}"))
    events.append(("cus_a", "api.request", at(1, month=4), "{}"))  # the next period
    await store(sessions, events)
    meters = [CALLS, LAST, PEAK, TOKENS]
    terms = CustomerTerms(
        customer_id="cus_a",
        period=period,
        subscriptions=[],
        plans={},
        meters={m.code: m for m in meters},
    )
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    summaries = UsageSummaries(sessions, ReferenceBilling(sessions))
    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        month = await summaries.period(terms, date(2026, 4, 15))
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
    # One query for the period's documents; per event type one for the month and one for
    # its days (and on PostgreSQL a setting per call): a window per day would take 2 x 31
    # more.
    assert len(statements) <= 1 + 2 * 2 + 2, statements

    open_month = await summaries.period(terms, date(2026, 3, 10))
    async with sessions() as session:
        whole = await aggregate(session, "cus_a", meters, period.start, period.end)
        days = {}
        for n in range(31):
            day = date(2026, 3, 1) + timedelta(days=n)
            days[day] = await aggregate(
                session, "cus_a", meters, midnight(day), midnight(day + timedelta(days=1))
            )
    assert [s.meter.code for s in month] == ["calls", "last", "peak", "tokens"]
    for series, open_series in zip(month, open_month, strict=True):
        code = series.meter.code
        assert (series.quantity, series.event_count) == (
            whole[code].quantity,
            whole[code].event_count,
        )
        assert series.daily == [
            DayUsage(day, q[code].quantity, q[code].event_count) for day, q in days.items()
        ]
        # The open month: the same totals, the days up to the 10th.
        assert (open_series.quantity, open_series.event_count) == (
            series.quantity,
            series.event_count,
        )
        assert open_series.daily == series.daily[:10]
    tokens = {s.meter.code: s for s in month}["tokens"]
    assert tokens.daily[4] == DayUsage(date(2026, 3, 5), D(0), 0)
    assert tokens.daily[1] == DayUsage(date(2026, 3, 2), D(20 + 21 + 22), 3)
    assert tokens.daily[30] == DayUsage(date(2026, 3, 31), D(0), 0)
