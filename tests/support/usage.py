"""Usage events written straight into ``usage_events`` (no ingest API in between), and
JSON texts of a property in every shape SQL and the reference aggregation must read
alike."""

from __future__ import annotations

import random

import sqlalchemy as sa

from canonical.persistence import UTCDateTime

INSERT = sa.text(
    "INSERT INTO usage_events (source, event_id, event_type, customer_id, timestamp, "
    "properties, received_at, matched, adjustment) VALUES (:source, :event_id, :event_type, "
    ":customer_id, :timestamp, :properties, :timestamp, :matched, :adjustment)"
).bindparams(sa.bindparam("timestamp", type_=UTCDateTime()))


async def store(sessions, events: list[tuple]) -> None:
    """(customer, event type, time, properties as JSON text[, matched, adjustment])."""
    async with sessions.begin() as session:
        await session.execute(
            INSERT,
            [
                {
                    "source": "test",
                    "event_id": f"e{i}",
                    "customer_id": e[0],
                    "event_type": e[1],
                    "timestamp": e[2],
                    "properties": e[3],
                    "matched": e[4] if len(e) > 4 else 1,
                    "adjustment": e[5] if len(e) > 5 else 0,
                }
                for i, e in enumerate(events)
            ],
        )


# JSON texts of a property, every shape the two readings must agree on: integers SQL
# reads exactly, longer ones, reals, plain strings, escaped ones and the rest.
INTS = ["0", "-0", "1", "7", "-3", "42", "2147483648", "-4294967297", "99999999999999999"]
LONG = ["123456789012345678", "9223372036854775807", "9223372036854775808", "-1" + "0" * 30]
REALS = ["1.5", "-0.0", "12.50", "0.1", "1E5", "2e-3", "1e300", "-7.25"]
STRINGS = ['"7"', '"u1"', '"u2"', '"été"', '" 12 "', '"1_000"', '"NaN"', '"abc"', '""']
ESCAPED = ['"\\u00e9t\\u00e9"', '"a\\"b"']
OTHER = ["true", "false", "null", "{}", '{"a": [1, 2]}', "[1]", "[]"]
# Per customer (by number, modulo 4), the values its properties take.
POOLS = [INTS, INTS + REALS, INTS + STRINGS, INTS + LONG + REALS + STRINGS + ESCAPED + OTHER]


def random_properties(rng: random.Random, field: str, pool: list[str]) -> str:
    """An event's properties as JSON text: mostly ``field`` set to a value of ``pool``
    (and an unrelated key), sometimes without ``field`` at all."""
    if rng.random() < 0.1:
        return '{"other": 1}'
    return f'{{"{field}": {rng.choice(pool)}, "x": "y"}}'
