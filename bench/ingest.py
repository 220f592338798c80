"""Ingest throughput: events/s through the gateway's HTTP endpoint next to the floor.

The gateway path is the full one: OAuth bearer token verified, rate limit counted,
correlation ID, dedupe, durable commit before the answer.

The floor is the least any ingest can do with the same batches: decode the JSON with
msgspec and insert the events into the same database with the same exact dedupe
(INSERT ... ON CONFLICT DO NOTHING on (source, id)), one transaction per batch, no HTTP.
Both are measured in this one run, on fresh databases, and printed as a ratio.

Clients send concurrently (16 by default, as a fleet of product services would), so the
gateway's group commit has something to group. Both sides first store one warm-up batch
outside the timed window (connections, statement caches, the CRM and meter caches), and
each figure is the median of ``--repeat`` measurements, each on fresh databases with new
event ids: on a small, shared machine one measurement can be off by a fifth.

    python bench/ingest.py [--batches 200] [--batch-size 1000] [--clients 16] [--repeat 3]
                           [--postgres] [--ids uuid7|uuid4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
import uuid6

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import access_token, fresh_database, gateway_process  # noqa: E402

from canonical.persistence import create_engine, create_sqlite_writer  # noqa: E402
from canonical.time import utcnow  # noqa: E402
from process_apis.usage.batch import PendingBatch  # noqa: E402
from process_apis.usage.formats import decode_events  # noqa: E402
from process_apis.usage.writer import Prepared, write_batches  # noqa: E402


def make_batches(
    batches: int, size: int, duplicate_share: float = 0.0, ids: str = "uuid7"
) -> list[bytes]:
    """Batches as a product service sends them: event time moving forward with the
    stream (the last hour), 50 customers, ids time-ordered (UUIDv7, the default) or
    random (UUIDv4). With ``duplicate_share``, that share of each batch after the first
    resends events of the previous batch."""
    now = utcnow()
    step = timedelta(hours=1) / (batches * size)
    new_id = uuid6.uuid7 if ids == "uuid7" else uuid.uuid4
    out: list[bytes] = []
    previous: list[dict] = []
    n = 0
    for b in range(batches):
        events = []
        for i in range(size):
            if duplicate_share and b > 0 and i < size * duplicate_share:
                events.append(previous[i])
                continue
            events.append(
                {
                    "id": str(new_id()),
                    "source": "bench",
                    "event_type": "api.request",
                    "customer_id": f"cus_{i % 50}",
                    "timestamp": (now - timedelta(hours=1) + n * step).isoformat(),
                    "properties": {"path": "/v1/query", "ms": i % 300},
                }
            )
            n += 1
        previous = events
        out.append(msgspec.json.encode(events))
    return out


async def seed_customers(url: str) -> tuple[str, str]:
    """The customers and meter the batches name, so ingest takes the matched path, and a
    client allowed to send usage; returns its credentials."""
    from canonical.model import Customer, LegalEntity, Meter
    from gateway.settings import Settings
    from gateway.wiring import build_container

    container = build_container(Settings.from_env({}, database_url=url))
    try:
        await container.erp.put_legal_entity(
            LegalEntity(id="le_b", name="Bench", country="DE", currency="EUR")
        )
        await container.billing.put_meter(
            Meter(
                id="mtr_b",
                code="calls",
                name="Calls",
                event_type="api.request",
                aggregation="count",
            )
        )
        for i in range(50):
            await container.crm.put_customer(
                Customer(
                    id=f"cus_{i}",
                    name=f"Customer {i}",
                    legal_entity_id="le_b",
                    billing_country="DE",
                    currency="EUR",
                )
            )
        credentials = await container.clients.create("bench ingest", ["usage:write"])
    finally:
        await container.aclose()
    return credentials.client_id, credentials.client_secret


def _batch(body: bytes) -> PendingBatch:
    now = utcnow()
    events = decode_events(body, "application/json")
    for event in events:
        event.timestamp = event.timestamp or now
    return PendingBatch(now, None, events)


def _warm_up_batch(size: int) -> bytes:
    """A batch of events no measured batch carries, stored before the clock starts."""
    return make_batches(1, size)[0]


async def floor(url: str, batches: list[bytes], warm_up: bytes) -> float:
    """Decode + insert with the same dedupe: each batch decoded by msgspec and written by
    the statement ingest uses, one transaction per batch, on the connection ingest uses
    (SQLite: the synchronous writer connection; PostgreSQL: the async engine); no HTTP, no
    auth, no matching, no group commit."""
    if url.startswith("sqlite"):
        writer = create_sqlite_writer(url)
        try:
            with writer.begin() as connection:
                write_batches(connection, [Prepared("sqlite", _batch(warm_up))])
            started = time.perf_counter()
            for body in batches:
                with writer.begin() as connection:
                    write_batches(connection, [Prepared("sqlite", _batch(body))])
            return time.perf_counter() - started
        finally:
            writer.dispose()
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(write_batches, [Prepared("postgresql", _batch(warm_up))])
        started = time.perf_counter()
        for body in batches:
            async with engine.begin() as connection:
                await connection.run_sync(write_batches, [Prepared("postgresql", _batch(body))])
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def through_gateway(
    url: str, batches: list[bytes], warm_up: bytes, clients: int, credentials: tuple[str, str]
) -> float:
    async with gateway_process(url) as (http, _):
        token = await access_token(http, credentials)
        queue = list(batches)
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        warm = await http.post("/process/usage/v1/events", content=warm_up, headers=headers)
        warm.raise_for_status()

        async def worker():
            while queue:
                body = queue.pop()
                response = await http.post(
                    "/process/usage/v1/events", content=body, headers=headers
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started


async def measure_once(postgres: bool, args, duplicate_share: float) -> tuple[float, float]:
    """Gateway and floor events/s, each on a fresh database, for one set of batches."""
    batches = make_batches(args.batches, args.batch_size, duplicate_share, args.ids)
    warm_up = _warm_up_batch(args.batch_size)
    events = args.batches * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(Path(tmp), postgres=postgres) as url:
            floor_s = await floor(url, batches, warm_up)
        async with fresh_database(Path(tmp), postgres=postgres) as url:
            credentials = await seed_customers(url)
            gateway_s = await through_gateway(url, batches, warm_up, args.clients, credentials)
    return events / gateway_s, events / floor_s


async def measure(label: str, postgres: bool, args, duplicate_share: float) -> None:
    runs = [await measure_once(postgres, args, duplicate_share) for _ in range(args.repeat)]
    gateway_rate = statistics.median(g for g, _ in runs)
    floor_rate = statistics.median(f for _, f in runs)
    spread = ", ".join(f"{g / 1000:.0f}k" for g, _ in runs)
    print(
        f"{label:<28} {gateway_rate:>12,.0f} {floor_rate:>12,.0f} "
        f"{gateway_rate / floor_rate:>7.2f}   {spread}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure (median)")
    parser.add_argument("--postgres", action="store_true", help="also measure PostgreSQL")
    parser.add_argument(
        "--ids", choices=["uuid7", "uuid4"], default="uuid7", help="event ids (uuid4: random)"
    )
    args = parser.parse_args()
    print(
        f"{args.batches} batches x {args.batch_size} events, {args.clients} concurrent clients, "
        f"median of {args.repeat}"
    )
    print(
        f"{'backend / traffic':<28} {'gateway ev/s':>12} {'floor ev/s':>12} {'ratio':>7}"
        "   gateway, each measurement"
    )
    await measure("sqlite, unique", False, args, 0.0)
    await measure("sqlite, 30% resends", False, args, 0.3)
    if args.postgres:
        await measure("postgresql, unique", True, args, 0.0)
        await measure("postgresql, 30% resends", True, args, 0.3)


if __name__ == "__main__":
    asyncio.run(main())
