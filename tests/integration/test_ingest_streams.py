"""Ingest through Redis Streams (``METERLINE_INGEST_BACKBONE=redis-streams``).

- One gateway in this process: ingest goes through the stream and its own consumer, is
  answered after the commit, and the rows are in the database.
- Two real gateway processes (uvicorn) on one PostgreSQL database and one Redis key
  prefix, sent the same overlapping batches concurrently: every event is stored once and
  reported accepted exactly once across all answers.
- A consumer that dies after reading (or after committing) but before acknowledging:
  another consumer takes its entries over after the claim timeout, and every event is
  stored exactly once.
- Failures: a bad batch in a group transaction fails only its own request; Redis down
  answers 503 ``unavailable`` with Retry-After; misconfiguration refuses to start.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from canonical import errors
from canonical.persistence import create_engine, create_sqlite_writer
from canonical.time import utcnow
from gateway.settings import Settings
from gateway.wiring import build_container
from process_apis.usage.batch import PendingBatch
from process_apis.usage.formats import ReceivedEvent
from process_apis.usage.group_commit import GroupCommit, ThreadGroupCommit
from process_apis.usage.streams import GROUP, RedisStreams, StreamConsumer, StreamSink
from process_apis.usage.writer import prepare, write_batches
from tests.conftest import _require
from tests.support.app import gateway_client
from tests.support.auth import issue_token
from tests.support.databases import postgres_admin_url, postgres_available, throwaway_postgres
from tests.support.processes import METERLINE, ROOT, free_port, gateway_processes, stop, until
from tests.support.seeding import CALLS_METER, SELLER, customer

pytestmark = pytest.mark.redis

EVENTS = "/process/usage/v1/events"
CUSTOMERS = [f"cus_s{i}" for i in range(5)]


def _event(i: int, source: str = "svc") -> dict:
    return {
        "id": f"evt-{i}",
        "source": source,
        "event_type": "api.request",
        "customer_id": CUSTOMERS[i % len(CUSTOMERS)],
        "properties": {"n": i},
    }


def _received(ids: list[str], source: str = "svc") -> PendingBatch:
    now = utcnow()
    events = [
        ReceivedEvent(i, source, "api.request", "cus_x", now, msgspec.Raw(b'{"k":1}')) for i in ids
    ]
    return PendingBatch(now, None, events)


async def _rows(url: str) -> tuple[int, int, list]:
    """Rows stored, distinct (source, event_id) among them, and keys stored twice."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(sa.text("SELECT count(*) FROM usage_events"))).scalar()
            keys = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FROM "
                        "(SELECT DISTINCT source, event_id FROM usage_events) AS k"
                    )
                )
            ).scalar()
            twice = (
                await conn.execute(
                    sa.text(
                        "SELECT source, event_id FROM usage_events GROUP BY source, event_id "
                        "HAVING count(*) > 1"
                    )
                )
            ).all()
        return total, keys, twice
    finally:
        await engine.dispose()


def _store(url: str, engine) -> GroupCommit | ThreadGroupCommit:
    """What a consumer writes through, as the wiring chooses it: a group commit in a
    writer thread of its own on SQLite, on the async engine on PostgreSQL."""
    if url.startswith("sqlite"):
        return ThreadGroupCommit(create_sqlite_writer(url), prepare("sqlite"), write_batches)
    return GroupCommit(engine, prepare("postgresql"), write_batches)


async def _stream_empty(streams: RedisStreams) -> None:
    """Everything read was acknowledged and deleted."""
    assert await streams.commands.xlen(streams.ingest) == 0
    summary = await streams.commands.xpending(streams.ingest, GROUP)
    assert summary["pending"] == 0, summary


async def _seed(container) -> None:
    await container.erp.put_legal_entity(SELLER)
    await container.billing.put_meter(CALLS_METER)
    for customer_id in CUSTOMERS:
        await container.crm.put_customer(customer(customer_id))


# --- (a) one gateway, in this process ----------------------------------------------------


async def test_ingest_through_the_stream_answers_after_commit(database_url, redis_url):
    url, prefix = redis_url
    async with gateway_client(
        database_url, redis_url=url, redis_key_prefix=prefix, ingest_backbone="redis-streams"
    ) as client:
        container = client.container
        assert container.stream_sink is not None
        assert container.usage._sink is container.stream_sink
        await _seed(container)
        batch = [_event(i) for i in range(20)] + [_event(0, source="other")]

        first = await client.post(EVENTS, json=batch)
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["accepted"], body["duplicates"], body["unmatched"]) == (21, 0, 0)
        # Answered after the commit: the rows are there the moment the answer is.
        assert await _rows(database_url) == (21, 21, [])

        again = await client.post(EVENTS, json=[*batch[:5], _event(99)])
        assert again.status_code == 200, again.text
        body = again.json()
        assert (body["accepted"], body["duplicates"]) == (1, 5)
        assert [r["status"] for r in body["results"]] == ["duplicate"] * 5 + ["accepted"]
        assert await _rows(database_url) == (22, 22, [])

        streams = container.streams
        await _stream_empty(streams)
        # Read replies are deleted; the reply stream expires once the process is gone.
        reply_stream = container.stream_sink.reply_stream
        assert await streams.commands.xlen(reply_stream) == 0
        assert 0 < await streams.commands.ttl(reply_stream) <= 600


# --- (b) two gateway processes --------------------------------------------------------


@pytest.fixture
async def postgres_url():
    await _require("PostgreSQL", postgres_available)
    async with throwaway_postgres(postgres_admin_url()) as url:
        yield url


def _overlapping_batches(events: int, size: int, extra: int, seed: int = 7) -> list[list[dict]]:
    """Every event in at least one batch, and ``extra`` batches of random events on top,
    each batch in random order (so that writers meet the same events in other orders)."""
    rng = random.Random(seed)
    ids = list(range(events))
    rng.shuffle(ids)
    batches = [ids[i : i + size] for i in range(0, events, size)]
    batches += [rng.sample(range(events), size) for _ in range(extra)]
    rng.shuffle(batches)
    return [[_event(i) for i in batch] for batch in batches]


async def test_two_gateway_processes_store_each_event_once(postgres_url, redis_url, tmp_path):
    url, prefix = redis_url
    container = build_container(Settings.from_env({}, database_url=postgres_url))
    try:
        await _seed(container)
        credentials = await container.clients.create("stream test", ["usage:write"])
    finally:
        await container.aclose()
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": url,
        "METERLINE_REDIS_KEY_PREFIX": prefix,
        "METERLINE_INGEST_BACKBONE": "redis-streams",
        "METERLINE_LOG_LEVEL": "WARNING",
        "METERLINE_RATE_LIMIT_INGEST": "100000/second",
    }
    n_events = 600
    batches = _overlapping_batches(n_events, size=40, extra=45)

    async with gateway_processes(env, tmp_path / "one.log", tmp_path / "two.log") as (one, two):
        token = await issue_token(one, credentials.client_id, credentials.client_secret)
        headers = {"Authorization": f"Bearer {token}"}
        limit = asyncio.Semaphore(16)

        async def send(http: httpx.AsyncClient, batch: list[dict]) -> dict:
            async with limit:
                response = await http.post(EVENTS, json=batch, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        # The same batch through both gateways at once, all batches overlapping.
        answers = await asyncio.gather(
            *(send(http, batch) for batch in batches for http in (one, two))
        )

    accepted: dict[tuple[str, str], int] = {}
    for batch, answer in zip((b for b in batches for _ in range(2)), answers, strict=True):
        assert answer["accepted"] + answer["duplicates"] == len(batch)
        assert answer["rejected"] == answer["unmatched"] == 0
        for event, result in zip(batch, answer["results"], strict=True):
            assert result["id"] == event["id"]
            if result["status"] == "accepted":
                key = (event["source"], event["id"])
                accepted[key] = accepted.get(key, 0) + 1
    assert sum(answer["accepted"] for answer in answers) == n_events
    # The gateways raced for the same events: each won some.
    assert sum(a["accepted"] for a in answers[0::2]) > 0
    assert sum(a["accepted"] for a in answers[1::2]) > 0
    assert len(accepted) == n_events and set(accepted.values()) == {1}
    assert await _rows(postgres_url) == (n_events, n_events, [])
    streams = RedisStreams(url, prefix=prefix)
    try:
        await _stream_empty(streams)
        # Both processes wrote: each registered its consumers in the group.
        consumers = await streams.commands.xinfo_consumers(streams.ingest, GROUP)
        assert len({c["name"].rsplit(b"-", 2)[0] for c in consumers}) >= 2, consumers
    finally:
        await streams.aclose()


# --- dedicated writers: ``meterline worker --ingest-only`` --------------------------------


async def test_a_dedicated_worker_process_stores_what_gateways_send(
    sqlite_url, redis_url, tmp_path
):
    url, prefix = redis_url
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": url,
        "METERLINE_REDIS_KEY_PREFIX": prefix,
        "METERLINE_INGEST_BACKBONE": "redis-streams",
        "METERLINE_LOG_LEVEL": "WARNING",
    }
    streams = RedisStreams(url, prefix=prefix, block_seconds=0.2)
    sink = StreamSink(streams, reply_timeout=20)  # a gateway without a writer of its own
    log = tmp_path / "worker.log"
    command = [str(METERLINE), "worker", "--ingest-only"]
    with log.open("wb") as output:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        outcome = await asyncio.wait_for(sink.submit(_received(["w1", "w2", "w3"])), 20)
        assert outcome.inserted == [0, 1, 2]
        assert await _rows(sqlite_url) == (3, 3, [])
        worker.terminate()  # SIGTERM: finishes what it holds, then exits
        assert await asyncio.to_thread(worker.wait, 10) == 0, log.read_text()
        assert await _is_empty(streams)
    finally:
        stop(worker)
        await sink.aclose(timeout=0.1)
        await streams.aclose()


# --- (c) a consumer dies before acknowledging -------------------------------------------


async def test_entries_of_a_dead_consumer_are_taken_over_and_stored_once(database_url, redis_url):
    url, prefix = redis_url
    streams = RedisStreams(url, prefix=prefix, block_seconds=0.2)
    engine = create_engine(database_url)
    sink = StreamSink(streams, reply_timeout=20)  # no writer of its own
    stores = [_store(database_url, engine), _store(database_url, engine)]
    dying = StreamConsumer(streams, stores[0], claim_timeout=1.0, name="dying")
    rescuer = StreamConsumer(streams, stores[1], claim_timeout=1.0, name="rescuer")
    committed = asyncio.Event()

    async def die_before_replying(entries, results):
        committed.set()  # called after the commit, before replying and acknowledging
        await asyncio.Event().wait()

    dying._finish = die_before_replying
    first = second = None
    try:
        # 1: read and committed by a consumer that dies before replying and acknowledging.
        first = asyncio.create_task(sink.submit(_received([f"a{i}" for i in range(30)])))
        dying.start()
        await asyncio.wait_for(committed.wait(), 10)
        await dying.aclose(timeout=0.1)  # the crash: its loop is cancelled
        assert await _rows(database_url) == (30, 30, [])

        # 2: read by a consumer that dies before storing anything.
        second = asyncio.create_task(sink.submit(_received([f"b{i}" for i in range(20)])))
        read: list = []

        async def read_one() -> bool:
            response = await streams.commands.xreadgroup(
                GROUP, "crashed-reader", {streams.ingest: ">"}, count=10
            )
            read.extend(e for _, entries in response or () for e in entries)
            return bool(read)

        await until(read_one)
        assert len(read) == 1
        await asyncio.sleep(0.3)
        assert not first.done() and not second.done()

        started = time.monotonic()
        rescuer.start()
        stored_now = await asyncio.wait_for(second, 10)
        stored_before = await asyncio.wait_for(first, 10)
        assert time.monotonic() - started >= 0.5  # only after the claim timeout
        # The batch nobody stored is stored now; the batch the dead consumer had committed
        # is not stored again, and its (late) reply reports its events as duplicates.
        assert stored_now.inserted == list(range(20))
        assert stored_before.inserted == []
        assert await _rows(database_url) == (50, 50, [])
        await until(lambda: _is_empty(streams))
    finally:
        for job in (first, second):
            if job is not None and not job.done():
                job.cancel()
        await rescuer.aclose()
        await dying.aclose()
        for store in stores:
            await store.aclose()
        await sink.aclose(timeout=0.1)
        await streams.aclose()
        await engine.dispose()


async def _is_empty(streams: RedisStreams) -> bool:
    length = await streams.commands.xlen(streams.ingest)
    pending = (await streams.commands.xpending(streams.ingest, GROUP))["pending"]
    return length == 0 and pending == 0


# --- failures --------------------------------------------------------------------------


async def test_a_failing_batch_fails_only_its_own_request(sqlite_url, redis_url):
    url, prefix = redis_url
    streams = RedisStreams(url, prefix=prefix, block_seconds=0.2)
    groups: list[int] = []

    def write_unless_poisoned(connection, prepared):
        groups.append(len(prepared))
        if any(e.id == "poison" for p in prepared for e in p.batch.events):
            raise RuntimeError("cannot store this")
        return write_batches(connection, prepared)

    store = ThreadGroupCommit(
        create_sqlite_writer(sqlite_url), prepare("sqlite"), write_unless_poisoned
    )
    consumer = StreamConsumer(streams, store, claim_timeout=5.0)
    sink = StreamSink(streams, reply_timeout=10)
    try:
        good = asyncio.create_task(sink.submit(_received(["g1", "g2"])))
        bad = asyncio.create_task(sink.submit(_received(["x1", "poison"])))
        await until(lambda: _length_is(streams, 2))
        assert await consumer.drain() == 2
        assert (await good).inserted == [0, 1]
        with pytest.raises(errors.MeterlineError) as failure:
            await bad
        assert failure.value.code == "internal_error"
        assert not isinstance(failure.value, errors.Unavailable | errors.InvalidRequest)
        # One group transaction for both, then one each.
        assert groups == [2, 1, 1]
        assert await _rows(sqlite_url) == (2, 2, [])
        assert await _is_empty(streams)
    finally:
        await consumer.aclose()
        await store.aclose()
        await sink.aclose(timeout=0.1)
        await streams.aclose()


async def _length_is(streams: RedisStreams, n: int) -> bool:
    return await streams.commands.xlen(streams.ingest) == n


async def test_redis_down_answers_503_unavailable(sqlite_url):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with gateway_client(sqlite_url, redis_url=dead, ingest_backbone="redis-streams") as c:
        response = await c.post(EVENTS, json=[_event(1)])
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert await _rows(sqlite_url) == (0, 0, [])


async def test_a_full_backlog_answers_503_and_keeps_what_it_holds(sqlite_url, redis_url):
    url, prefix = redis_url
    streams = RedisStreams(url, prefix=prefix, block_seconds=0.2)
    store = ThreadGroupCommit(create_sqlite_writer(sqlite_url), prepare("sqlite"), write_batches)
    consumer = StreamConsumer(streams, store, claim_timeout=5.0)
    # No writer runs while two batches arrive: the stream holds them, a third is refused.
    sink = StreamSink(streams, reply_timeout=10, max_backlog=2)
    try:
        first = asyncio.create_task(sink.submit(_received(["b1", "b2"])))
        second = asyncio.create_task(sink.submit(_received(["b3"])))
        await until(lambda: _length_is(streams, 2))
        with pytest.raises(errors.Unavailable, match="backlog is full"):
            await sink.submit(_received(["b4"]))
        assert await _length_is(streams, 2)
        # A writer catches up: the two held batches are stored and answered.
        assert await consumer.drain() == 2
        assert (await first).inserted == [0, 1]
        assert (await second).inserted == [0]
        assert await _rows(sqlite_url) == (3, 3, [])
        # Room again: the refused batch goes through when resent.
        third = asyncio.create_task(sink.submit(_received(["b4"])))
        await until(lambda: _length_is(streams, 1))
        assert await consumer.drain() == 1
        assert (await third).inserted == [0]
    finally:
        await consumer.aclose()
        await store.aclose()
        await sink.aclose(timeout=0.1)
        await streams.aclose()


async def test_readiness_checks_the_ingest_streams_redis(sqlite_url, redis_url):
    url, prefix = redis_url
    settings = {"ingest_backbone": "redis-streams", "authenticated": False}
    async with gateway_client(sqlite_url, redis_url=url, redis_key_prefix=prefix, **settings) as c:
        response = await c.get("/health/ready")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": "ok", "ingest_stream": "ok"}
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with gateway_client(sqlite_url, redis_url=dead, **settings) as c:
        response = await c.get("/health/ready")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["code"] == "not_ready" and "ingest stream" in body["detail"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ingest_backbone": "redis-streams"}, "needs REDIS_URL"),
        ({"ingest_backbone": "kafka"}, "choose one of"),
        (
            {
                "ingest_backbone": "redis-streams",
                "redis_url": "redis://127.0.0.1:6379/0",
                "ingest_reply_timeout_seconds": 60,
                "ingest_claim_timeout_seconds": 30,
            },
            "at most",
        ),
    ],
)
def test_misconfigured_backbone_refuses_to_start(overrides, message):
    settings = Settings.from_env({}, **overrides)
    with pytest.raises(ValueError, match=message):
        build_container(settings)
