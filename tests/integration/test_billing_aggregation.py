"""Usage aggregation in SQL (``aggregate_windows``), on SQLite and PostgreSQL.

First a month of events whose every quantity is worked out by hand in the comments
beside them: events outside the window (before it, on its end, in another month), events
stored unmatched (billed once the mapping exists, as reconciliation reads them) and
events flagged for adjustment count like any other, values SQL cannot read exactly
(numbers in strings, reals in a sum, nulls and objects in a distinct count) fall back to
the reference. Then many customers with property values drawn from every JSON shape,
each window compared with the reference ``aggregate``, which reads events in Python."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from canonical.model import Meter
from process_apis.billing.aggregation import UsageWindow, aggregate, aggregate_windows
from tests.support.usage import POOLS, random_properties, store

D = Decimal
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)
MID = (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC))

CALLS = Meter(id="m1", code="calls", name="c", event_type="api.request", aggregation="count")
TOKENS = Meter(
    id="m2", code="tokens", name="t", event_type="llm.tokens", aggregation="sum", field="tokens"
)
STORAGE = Meter(id="m3", code="storage", name="s", event_type="disk", aggregation="max", field="gb")
USERS = Meter(
    id="m4",
    code="users",
    name="u",
    event_type="user.active",
    aggregation="unique_count",
    field="user_id",
)
SEATS = Meter(
    id="m5", code="seats", name="s", event_type="seats", aggregation="latest", field="seats"
)
# A second meter on the same events and a field whose name has a dot (a key, not a path).
PEAK_TOKENS = Meter(
    id="m6", code="peak", name="p", event_type="llm.tokens", aggregation="max", field="tok.en"
)
METERS = [CALLS, TOKENS, STORAGE, USERS, SEATS, PEAK_TOKENS]


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def quantities(found, customer: str, window=(START, END)) -> dict[str, tuple[Decimal, int]]:
    return {
        code: (q.quantity, q.event_count)
        for code, q in found[UsageWindow(customer, *window)].items()
    }


async def test_each_aggregation_over_a_month_of_events(sessions):
    await store(
        sessions,
        [
            # cus_a, api.request: on the start (counts), one unmatched, one flagged for
            # adjustment, one before the window, one on its end, one in April: 3.
            ("cus_a", "api.request", START, "{}"),
            ("cus_a", "api.request", at(12), "{}", 0),
            ("cus_a", "api.request", at(25), "{}", 1, 1),
            ("cus_a", "api.request", START - timedelta(microseconds=1), "{}"),
            ("cus_a", "api.request", END, "{}"),
            ("cus_a", "api.request", at(2, month=4), "{}"),
            # cus_a, llm.tokens: 100 + 250 + 7 (unmatched) = 357; the event without tokens
            # counts as an event only; 1000 in February does not count. Peak of "tok.en":
            # 40 (the nested {"tok": {"en": 99}} is not that key).
            ("cus_a", "llm.tokens", at(3), '{"tokens": 100, "tok.en": 40}'),
            ("cus_a", "llm.tokens", at(15), '{"tokens": 250, "tok": {"en": 99}}'),
            ("cus_a", "llm.tokens", at(16), '{"tokens": 7}', 0),
            ("cus_a", "llm.tokens", at(17), '{"model": "m"}'),
            ("cus_a", "llm.tokens", at(27, month=2), '{"tokens": 1000}'),
            # cus_a, disk: max(10, 12.5, 3) = 12.5; 99 in April does not count.
            ("cus_a", "disk", at(4), '{"gb": 10}'),
            ("cus_a", "disk", at(14), '{"gb": 12.5}'),
            ("cus_a", "disk", at(24), '{"gb": 3}'),
            ("cus_a", "disk", at(1, month=4), '{"gb": 99}'),
            # cus_a, user.active: "u1", "u2", 7 and "7" (a string is not the number): 4.
            ("cus_a", "user.active", at(5), '{"user_id": "u1"}'),
            ("cus_a", "user.active", at(6), '{"user_id": "u2"}'),
            ("cus_a", "user.active", at(11), '{"user_id": "u1"}'),
            ("cus_a", "user.active", at(13), '{"user_id": 7}'),
            ("cus_a", "user.active", at(18), '{"user_id": "7"}'),
            # cus_a, seats: the latest event with a number is on the 20th: 9 (stored
            # before the one of the 19th); the 22nd has none, April does not count.
            ("cus_a", "seats", at(20), '{"seats": 9}'),
            ("cus_a", "seats", at(2), '{"seats": 5}'),
            ("cus_a", "seats", at(19), '{"seats": 7}'),
            ("cus_a", "seats", at(22), '{"seats": null}'),
            ("cus_a", "seats", at(2, month=4), '{"seats": 50}'),
            # cus_b, values SQL leaves to the reference: tokens "15" + 2.5 = 17.5 (true and
            # null are no numbers); disk max("200", 7) = 200; users "u1", null and {"x": 1}:
            # 3; seats: the latest is a string, "11".
            ("cus_b", "llm.tokens", at(3), '{"tokens": "15"}'),
            ("cus_b", "llm.tokens", at(4), '{"tokens": 2.5}'),
            ("cus_b", "llm.tokens", at(5), '{"tokens": true}'),
            ("cus_b", "llm.tokens", at(6), '{"tokens": null}'),
            ("cus_b", "disk", at(3), '{"gb": "200"}'),
            ("cus_b", "disk", at(4), '{"gb": 7}'),
            ("cus_b", "user.active", at(3), '{"user_id": "u1"}'),
            ("cus_b", "user.active", at(4), '{"user_id": null}'),
            ("cus_b", "user.active", at(5), '{"user_id": {"x": 1}}'),
            ("cus_b", "seats", at(3), '{"seats": 4.5}'),
            ("cus_b", "seats", at(4), '{"seats": "11"}'),
            # cus_x is not asked for.
            ("cus_x", "api.request", at(3), "{}"),
        ],
    )
    wanted = {
        UsageWindow("cus_a", START, END): METERS,
        UsageWindow("cus_a", *MID): [CALLS, TOKENS, SEATS],
        UsageWindow("cus_b", START, END): METERS,
        UsageWindow("cus_c", START, END): [CALLS, TOKENS, SEATS],
    }
    async with sessions() as session:
        found = await aggregate_windows(session, wanted)

    assert quantities(found, "cus_a") == {
        "calls": (3, 3),
        "tokens": (357, 4),
        "peak": (40, 4),
        "storage": (D("12.5"), 3),
        "users": (4, 5),
        "seats": (9, 4),
    }
    # From the 10th to the 20th (exclusive): calls on the 12th; tokens 250 + 7 and the
    # event without; seats 7 (the 19th; the 20th is the window's end).
    assert quantities(found, "cus_a", MID) == {
        "calls": (1, 1),
        "tokens": (257, 3),
        "seats": (7, 1),
    }
    assert quantities(found, "cus_b") == {
        "calls": (0, 0),
        "tokens": (D("17.5"), 4),
        "peak": (0, 4),
        "storage": (200, 2),
        "users": (3, 3),
        "seats": (11, 2),
    }
    assert quantities(found, "cus_c") == {"calls": (0, 0), "tokens": (0, 0), "seats": (0, 0)}
    assert len(found) == len(wanted)


async def test_every_window_agrees_with_the_reference(sessions):
    rng = random.Random(20260301)
    meters = [TOKENS, STORAGE, USERS, SEATS, CALLS]
    events, wanted = [], {}
    for c in range(60):
        customer = f"cus_{c:02d}"
        pool = POOLS[c % len(POOLS)]
        for meter in meters:
            for _ in range(rng.randrange(0, 12)):
                # Distinct times (ties would make "latest" depend on row order), some
                # outside the month.
                moment = START + timedelta(days=rng.uniform(-3, 34), microseconds=len(events))
                properties = random_properties(rng, meter.field or "x", pool)
                events.append((customer, meter.event_type, moment, properties, rng.randrange(2)))
        wanted[UsageWindow(customer, START, END)] = meters
        wanted[UsageWindow(customer, *MID)] = meters
    await store(sessions, events)

    async with sessions() as session:
        found = await aggregate_windows(session, wanted)
        for window, window_meters in wanted.items():
            reference = await aggregate(
                session, window.customer_id, window_meters, window.start, window.end
            )
            assert {c: (q.quantity, q.event_count) for c, q in found[window].items()} == {
                c: (q.quantity, q.event_count) for c, q in reference.items()
            }, window
