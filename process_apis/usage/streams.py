"""Ingest through Redis Streams: several gateway and worker processes share the writing.

``StreamSink`` is the ``EventSink`` of a gateway process when the ingest backbone is
``redis-streams``. It appends each request's ``PendingBatch`` to the stream
``<prefix>:ingest`` together with a request id and the name of this process's reply
stream (``<prefix>:ingest:replies:<process uuid>``), then waits for the reply. One reader
task per process blocks on the reply stream and hands each reply to the request waiting
for it; read replies are deleted, and a reply stream expires when no reply has come for
a while, so a dead process leaves nothing behind.

``StreamConsumer`` runs in every gateway process (started with its sink) and in
``meterline worker``. Its loops read the stream as members of the consumer group
``ingest-writers``, several batches per read, and store all batches of a read together
(group commit across processes). Only after
the commit does it add each batch's ``CommitOutcome`` to the batch's reply stream, then
acknowledge and delete the entries. So an ingest request is answered after the durable
commit of its events, as with the in-process group commit. The consumer stores through
that group commit (this process's ``GroupCommit`` or ``ThreadGroupCommit``): the batches
of a read are submitted together and share its transactions, lock-conflict retries and
batch-by-batch fallback.

Exactly-once is the database's: ``write_batches`` inserts with ``ON CONFLICT (source,
event_id) DO NOTHING``. A batch delivered twice (its consumer died after reading it, and
another consumer took it over after the claim timeout with XAUTOCLAIM) stores nothing
twice; when the first delivery had committed, the second reports its events as
duplicates, to a request that stopped waiting long before (the reply timeout is at most
the claim timeout).

Failures: a Redis that cannot be reached answers the request 503 ``unavailable`` (with
Retry-After) rather than silently storing in-process; so does a batch that no writer
confirms within the reply timeout, and a batch arriving while the stream already holds
``max_backlog`` batches (no writer keeps up, or none runs): the stream is never trimmed,
since trimming would drop accepted events, so it is bounded by refusing new ones. The
reply of a batch that could not be stored carries an error: ``unavailable`` when the
database could not be reached or kept conflicting, else an internal error (500), as the
in-process path answers.
See docs/adr/0007-ingest-scale-out-redis-streams.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import exc as sa_exc

from canonical import errors
from process_apis.usage.batch import CommitOutcome, PendingBatch
from process_apis.usage.group_commit import GroupCommit, ThreadGroupCommit, is_lock_conflict

__all__ = [
    "GROUP",
    "RedisStreams",
    "Reply",
    "ReplyError",
    "StreamConsumer",
    "StreamSink",
]

log = logging.getLogger("meterline.ingest.streams")

GROUP = "ingest-writers"
# Entry fields.
BATCH, REQUEST, REPLY_TO, REPLY = b"batch", b"request", b"reply_to", b"reply"
# An entry delivered this many times without being acknowledged is given up (answered
# with an error and deleted): it keeps killing or stalling its consumers.
MAX_DELIVERIES = 5
# Pause after a Redis error before the next attempt.
REDIS_BACKOFF_SECONDS = 1.0


class ReplyError(msgspec.Struct, array_like=True, frozen=True):
    # unavailable -> 503 (resend later); invalid -> 400; internal -> 500.
    kind: Literal["unavailable", "invalid", "internal"]
    code: str
    detail: str


class Reply(msgspec.Struct, array_like=True, frozen=True):
    request_id: str
    outcome: CommitOutcome | None = None
    error: ReplyError | None = None


_encode = msgspec.json.Encoder().encode
# JSON, not MessagePack: ``ReceivedEvent.properties`` is raw JSON (``msgspec.Raw``),
# which msgspec copies verbatim into the output.
_decode_batch = msgspec.json.Decoder(PendingBatch).decode
_decode_reply = msgspec.json.Decoder(Reply).decode


class RedisStreams:
    """The Redis clients and key names of the ingest streams; one per process.

    Two pools: one for commands, with short timeouts, and one for blocking reads, whose
    socket timeout outlasts the block. Neither retries on its own: a failed command is
    answered (503) or tried again by the loop that issued it."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        block_seconds: float = 1.0,
        command_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        no_retry = Retry(NoBackoff(), 0)
        self.commands = aioredis.Redis.from_url(
            url,
            socket_timeout=command_timeout,
            socket_connect_timeout=connect_timeout,
            retry=no_retry,
        )
        self.blocking = aioredis.Redis.from_url(
            url,
            socket_timeout=block_seconds + command_timeout,
            socket_connect_timeout=connect_timeout,
            retry=no_retry,
        )
        self.prefix = prefix
        self.ingest = f"{prefix}:ingest"
        self.block_ms = max(1, int(block_seconds * 1000))

    def reply_stream(self, process_id: str) -> str:
        return f"{self.ingest}:replies:{process_id}"

    async def aclose(self) -> None:
        await self.commands.aclose()
        await self.blocking.aclose()


# --- the gateway side ------------------------------------------------------------------


# Appends a batch unless the stream already holds ARGV[1] entries (one round trip, and no
# race between the length check and the append). Returns the entry id, or false.
_BOUNDED_XADD = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""


class StreamSink:
    """``EventSink`` handing batches to the ingest stream; answers after the commit."""

    def __init__(
        self,
        streams: RedisStreams,
        *,
        reply_timeout: float = 30.0,
        consumer: StreamConsumer | None = None,
        retry_after: float = 1.0,
        max_backlog: int = 2_000,
    ) -> None:
        self._streams = streams
        self._max_backlog = max_backlog
        self._xadd = streams.commands.register_script(_BOUNDED_XADD)
        self.process_id = uuid.uuid4().hex
        self.reply_stream = streams.reply_stream(self.process_id)
        self._reply_timeout = reply_timeout
        self._retry_after = retry_after
        # This process's own writer, started with the sink so that one process alone
        # stores what it receives.
        self._consumer = consumer
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store ``batch`` through the stream; returns once a writer has committed it."""
        if self._closing:
            raise errors.Unavailable(
                "ingest is shutting down; retry against another instance",
                retry_after=self._retry_after,
            )
        self._start()
        loop = asyncio.get_running_loop()
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Reply] = loop.create_future()
        self._waiting[request_id] = future  # before XADD: the reply may come first
        try:
            try:
                added = await self._xadd(
                    keys=[self._streams.ingest],
                    args=[
                        self._max_backlog,
                        BATCH,
                        _encode(batch),
                        REQUEST,
                        request_id,
                        REPLY_TO,
                        self.reply_stream,
                    ],
                )
            except RedisError as exc:  # logged with the 503 by the gateway
                raise errors.Unavailable(
                    "the ingest stream (Redis) is unreachable; nothing was stored",
                    retry_after=self._retry_after,
                ) from exc
            if not added:
                raise errors.Unavailable(
                    f"the ingest backlog is full ({self._max_backlog} batches wait for a "
                    "writer); nothing was stored, resend later",
                    retry_after=self._retry_after,
                )
            try:
                async with asyncio.timeout(self._reply_timeout):
                    # A cancelled request leaves its batch in the stream, to be stored
                    # (a resend is told it is a duplicate); only the wait is given up.
                    reply = await asyncio.shield(future)
            except TimeoutError as exc:
                raise errors.Unavailable(
                    f"no ingest writer confirmed this batch within {self._reply_timeout:g} s; "
                    "resend it (events stored meanwhile are reported as duplicates)",
                    retry_after=self._retry_after,
                ) from exc
        finally:
            self._waiting.pop(request_id, None)
        return _outcome(reply, self._retry_after)

    def _start(self) -> None:
        """Starts the reply reader (and this process's consumer) once per event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._reader is None or self._reader.done():
            self._loop, self._stopping = loop, asyncio.Event()
            self._reader = asyncio.create_task(
                self._read_replies(self._stopping), name="ingest-replies"
            )
        if self._consumer is not None:
            self._consumer.start()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Waits (up to ``timeout``) for the replies of requests in flight, then stops
        the reader. A later ``submit`` starts it again."""
        if self._reader is None or self._loop is not asyncio.get_running_loop():
            self._reader, self._waiting = None, {}
            return
        self._closing = True
        try:
            pending = [f for f in self._waiting.values() if not f.done()]
            if pending:
                await asyncio.wait(pending, timeout=timeout)
            self._stopping.set()
            self._reader.cancel()  # only replies nobody waits for any more can be lost
            await _stop([self._reader], self._streams.block_ms / 1000 + 1.0)
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(
                        errors.Unavailable(
                            "ingest stopped before this batch was confirmed; resend it",
                            retry_after=self._retry_after,
                        )
                    )
        finally:
            self._reader, self._closing = None, False

    async def _read_replies(self, stopping: asyncio.Event) -> None:
        streams, name = self._streams, self.reply_stream
        last: bytes | str = "0-0"
        failing = False
        while not stopping.is_set():
            try:
                response = await streams.blocking.xread(
                    {name: last}, count=512, block=streams.block_ms
                )
                ids: list[bytes] = []
                for _stream, entries in response or ():
                    for entry_id, fields in entries:
                        last = entry_id
                        ids.append(entry_id)
                        self._resolve(fields)
                if ids:
                    await streams.commands.xdel(name, *ids)
                if failing:
                    log.warning("ingest replies readable again")
                    failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep reading whatever happens; waiters time out
                if not failing:
                    log.warning("reading ingest replies failed (%r); retrying", exc)
                    failing = True
                await _sleep_unless(stopping, REDIS_BACKOFF_SECONDS)

    def _resolve(self, fields: dict[bytes, bytes]) -> None:
        try:
            reply = _decode_reply(fields[REPLY])
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("malformed ingest reply ignored: %r", exc)
            return
        future = self._waiting.get(reply.request_id)
        if future is not None and not future.done():  # else: the request gave up
            future.set_result(reply)


def _outcome(reply: Reply, retry_after: float) -> CommitOutcome:
    if reply.error is None:
        assert reply.outcome is not None
        return reply.outcome
    error = reply.error
    if error.kind == "unavailable":
        raise errors.Unavailable(error.detail, code=error.code, retry_after=retry_after)
    if error.kind == "invalid":
        raise errors.InvalidRequest(error.detail, code=error.code)
    raise errors.MeterlineError(error.detail, code=error.code)


# --- the writer side -------------------------------------------------------------------


class _Entry(msgspec.Struct):
    entry_id: bytes
    request_id: str
    reply_to: str | None
    batch: PendingBatch | None  # None: the entry could not be decoded


class StreamConsumer:
    """Reads the ingest stream in the consumer group and stores what it reads through
    ``store``, this process's group commit (which the container closes)."""

    def __init__(
        self,
        streams: RedisStreams,
        store: GroupCommit | ThreadGroupCommit,
        *,
        loops: int = 1,
        count: int = 64,
        claim_timeout: float = 60.0,
        reply_ttl: float = 600.0,
        name: str | None = None,
    ) -> None:
        self._streams = streams
        self._sink = store
        self._loops = loops
        self._count = count
        self._claim_ms = max(1, int(claim_timeout * 1000))
        self._reply_ttl = max(1, int(reply_ttl))
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the consumer loops (once per event loop; later calls do nothing)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._tasks and not all(t.done() for t in self._tasks):
            return
        self._loop, self._stopping = loop, asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(f"{self.name}-{n}"), name=f"ingest-consumer-{n}")
            for n in range(self._loops)
        ]

    async def aclose(self, timeout: float = 10.0) -> None:
        """Lets each loop finish the batches it holds (up to ``timeout``), then stops
        them. Entries a cancelled loop had read are taken over after the claim timeout."""
        if self._tasks and self._loop is asyncio.get_running_loop():
            assert self._stopping is not None
            self._stopping.set()
            await _stop(self._tasks, timeout)
        self._tasks = []

    async def drain(self) -> int:
        """Stores what is in the stream (new entries and ones due for takeover) until a
        read finds nothing; returns how many entries were handled. For ``meterline
        worker --once`` and tests."""
        consumer = f"{self.name}-drain"
        await self._ensure_group()
        handled = await self._reclaim(consumer)
        while True:
            entries = await self._read(consumer, block=None)
            if not entries:
                return handled
            await self._handle(consumer, entries)
            handled += len(entries)

    async def _run(self, consumer: str) -> None:
        assert self._stopping is not None
        stopping = self._stopping
        next_claim = 0.0
        failing = False
        while not stopping.is_set():
            try:
                if time.monotonic() >= next_claim:
                    await self._ensure_group()
                    await self._reclaim(consumer)
                    next_claim = time.monotonic() + self._claim_ms / 2000
                entries = await self._read(consumer, block=self._streams.block_ms)
                if entries:
                    await self._handle(consumer, entries)
                if failing:
                    log.warning("ingest consumer %s: Redis answers again", consumer)
                    failing = False
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: create it again
                    next_claim = 0.0
                    continue
                log.exception("ingest consumer %s: unexpected Redis answer", consumer)
                await _sleep_unless(stopping, REDIS_BACKOFF_SECONDS)
            except RedisError as exc:
                if not failing:
                    log.warning("ingest consumer %s: Redis unreachable (%r)", consumer, exc)
                    failing = True
                await _sleep_unless(stopping, REDIS_BACKOFF_SECONDS)
            except Exception:  # never let one bad read end the loop
                log.exception("ingest consumer %s failed; continuing", consumer)
                await _sleep_unless(stopping, REDIS_BACKOFF_SECONDS)

    # -- Redis ----------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        try:
            # From the start of the stream: batches added before any writer existed are
            # stored too (handled entries are deleted, so "0" holds only unhandled ones).
            await self._streams.commands.xgroup_create(
                self._streams.ingest, GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, consumer: str, *, block: int | None) -> list[tuple[bytes, dict]]:
        client = self._streams.blocking if block is not None else self._streams.commands
        response = await client.xreadgroup(
            GROUP, consumer, {self._streams.ingest: ">"}, count=self._count, block=block
        )
        return [entry for _stream, entries in response or () for entry in entries]

    async def _reclaim(self, consumer: str) -> int:
        """Takes over entries other consumers read and left unacknowledged for longer
        than the claim timeout, and stores them. Returns how many were handled."""
        streams, handled, start = self._streams, 0, "0-0"
        while True:
            response = await streams.commands.xautoclaim(
                streams.ingest, GROUP, consumer, self._claim_ms, start_id=start, count=self._count
            )
            start, claimed = response[0], [e for e in response[1] if e[1] is not None]
            if claimed:
                claimed = await self._give_up_poison(consumer, claimed)
                log.warning(
                    "ingest consumer %s took over %d entries left by a stopped consumer",
                    consumer,
                    len(claimed),
                )
                if claimed:
                    await self._handle(consumer, claimed)
                handled += len(claimed)
            if start in (b"0-0", "0-0"):
                break
        await self._forget_idle_consumers(consumer)
        return handled

    async def _give_up_poison(
        self, consumer: str, claimed: list[tuple[bytes, dict]]
    ) -> list[tuple[bytes, dict]]:
        """Entries delivered ``MAX_DELIVERIES`` times are answered with an error and
        deleted instead of being tried again; returns the others."""
        ids = {entry_id for entry_id, _ in claimed}
        pending = await self._streams.commands.xpending_range(
            self._streams.ingest,
            GROUP,
            min=min(ids, key=_id_key),
            max=max(ids, key=_id_key),
            count=len(claimed) * 2,
            consumername=consumer,
        )
        poison = {
            p["message_id"]
            for p in pending
            if p["message_id"] in ids and p["times_delivered"] >= MAX_DELIVERIES
        }
        if not poison:
            return claimed
        bad = [_parse(entry_id, fields) for entry_id, fields in claimed if entry_id in poison]
        log.error("ingest: giving up %d entries delivered %d times", len(bad), MAX_DELIVERIES)
        error = ReplyError("internal", "internal_error", "this batch could not be stored")
        await self._finish(bad, [error] * len(bad))
        return [entry for entry in claimed if entry[0] not in poison]

    async def _forget_idle_consumers(self, consumer: str) -> None:
        """Removes consumers of stopped processes (nothing pending, long idle)."""
        idle_ms = self._claim_ms * 10
        with contextlib.suppress(ResponseError):
            for info in await self._streams.commands.xinfo_consumers(self._streams.ingest, GROUP):
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name != consumer and info["pending"] == 0 and info["idle"] > idle_ms:
                    await self._streams.commands.xgroup_delconsumer(
                        self._streams.ingest, GROUP, name
                    )

    async def _finish(
        self, entries: Sequence[_Entry], results: Sequence[CommitOutcome | ReplyError]
    ) -> None:
        """Replies to each entry's request, then acknowledges and deletes the entries."""
        streams = self._streams
        pipe = streams.commands.pipeline(transaction=False)
        reply_streams = set()
        for entry, result in zip(entries, results, strict=True):
            if entry.reply_to is None:
                continue
            if isinstance(result, ReplyError):
                reply = Reply(entry.request_id, error=result)
            else:
                reply = Reply(entry.request_id, outcome=result)
            pipe.xadd(entry.reply_to, {REPLY: _encode(reply)}, maxlen=10_000, approximate=True)
            reply_streams.add(entry.reply_to)
        for name in reply_streams:  # a dead process's reply stream expires
            pipe.expire(name, self._reply_ttl)
        ids = [entry.entry_id for entry in entries]
        pipe.xack(streams.ingest, GROUP, *ids)
        pipe.xdel(streams.ingest, *ids)
        await pipe.execute()

    # -- storing --------------------------------------------------------------------------

    async def _handle(self, consumer: str, raw: list[tuple[bytes, dict]]) -> None:
        entries = [_parse(entry_id, fields) for entry_id, fields in raw]
        broken = [e for e in entries if e.batch is None]
        if broken:
            error = ReplyError("internal", "internal_error", "the batch could not be decoded")
            await self._finish(broken, [error] * len(broken))
        stored = [e for e in entries if e.batch is not None]
        if stored:
            await self._finish(stored, await self._store([e.batch for e in stored]))  # type: ignore[misc]

    async def _store(self, batches: list[PendingBatch]) -> list[CommitOutcome | ReplyError]:
        """Submitted together, so the group commit takes them into one transaction (or
        one per 20,000 events); a batch that fails gets an error reply."""
        results = await self._sink.submit_many(batches)
        return [r if isinstance(r, CommitOutcome) else _reply_error(r) for r in results]


def _parse(entry_id: bytes, fields: dict[bytes, bytes]) -> _Entry:
    request = fields.get(REQUEST, b"").decode()
    reply_to = fields.get(REPLY_TO)
    try:
        batch: PendingBatch | None = _decode_batch(fields[BATCH])
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.error("ingest entry %r could not be decoded: %r", entry_id, exc)
        batch = None
    return _Entry(entry_id, request, reply_to.decode() if reply_to else None, batch)


def _id_key(entry_id: bytes) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition(b"-")
    return int(millis), int(sequence or 0)


def _reply_error(exc: BaseException) -> ReplyError:
    """What the waiting request is told about a batch that could not be stored."""
    if isinstance(exc, errors.Unavailable):
        return ReplyError("unavailable", exc.code, exc.detail)
    if isinstance(exc, errors.InvalidRequest):
        return ReplyError("invalid", exc.code, exc.detail)
    transient = (
        isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | OSError | TimeoutError)
        or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
        or is_lock_conflict(exc)
    )
    if transient:
        log.warning("ingest: the database could not store a batch: %r", exc)
        return ReplyError(
            "unavailable",
            "unavailable",
            "the event store could not store this batch now; resend it",
        )
    log.error("ingest: storing a batch failed", exc_info=exc)
    return ReplyError("internal", "internal_error", "storing this batch failed")


async def _stop(tasks: list[asyncio.Task], timeout: float) -> None:
    """Waits for tasks told to stop; cancels those still running after ``timeout``.

    Loops stop by an event rather than by cancellation: a cancellation that arrives
    during a blocking redis-py read can be lost (the read returns normally), so waiting
    for a cancelled reader is bounded too."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=1.0)
        if stuck:
            log.warning("ingest: %d stream tasks did not stop", len(stuck))


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
