"""Group commit without a database, for both writers: ``GroupCommit`` (writer tasks on
the event loop, PostgreSQL) and ``ThreadGroupCommit`` (a writer thread, SQLite).

A fake engine records each transaction's batches and whether it committed or rolled
back; the fake ``write`` stores every batch (all its events new) unless a batch is named
``bad*``, and waits at a gate the test opens, so batches can queue up behind a
transaction in progress."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading

import pytest

from canonical import errors
from canonical.time import utcnow
from process_apis.usage import group_commit as module
from process_apis.usage.batch import CommitOutcome, PendingBatch
from process_apis.usage.formats import ReceivedEvent
from process_apis.usage.group_commit import GroupCommit, ThreadGroupCommit


class Refused(Exception):
    pass


def batch(name: str, size: int = 1) -> PendingBatch:
    now = utcnow()
    events = [
        ReceivedEvent(name if i == 0 else f"{name}-{i}", "src", "t", "c", now) for i in range(size)
    ]
    return PendingBatch(now, f"corr-{name}", events)


def names(batches: list[PendingBatch]) -> list[str]:
    return [b.events[0].id for b in batches]


def write(connection, batches: list[PendingBatch]) -> list[CommitOutcome]:
    """The writer's contract: store the batches in ``connection``'s transaction."""
    connection.wait_at_gate()
    connection.engine.calls.append(names(batches))
    connection.batches.extend(batches)
    if any(name.startswith("bad") for name in names(batches)):
        raise Refused("refused by the database")
    return [CommitOutcome(list(range(b.size))) for b in batches]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []  # batches of each write, in order
        self.committed: list[list[str]] = []
        self.rolled_back: list[list[str]] = []
        self.threads: set[str] = set()

    @contextlib.contextmanager
    def transaction(self, connection):
        """What ``begin()`` of both engines does: commits on a clean exit, rolls back on
        an error; records the batches either way, and the thread it ran in."""
        self.threads.add(threading.current_thread().name)
        try:
            yield connection
        except BaseException:
            self.rolled_back.append(names(connection.batches))
            raise
        self.committed.append(names(connection.batches))


class AsyncConnection:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.batches: list[PendingBatch] = []

    def wait_at_gate(self) -> None:
        pass  # awaited in run_sync, as the database's round trips would be

    async def run_sync(self, fn, batches):
        only = self.engine.gate_only
        if only is None or any(name.startswith(only) for name in names(batches)):
            self.engine.started.set()
            await self.engine.gate.wait()
        return fn(self, batches)


class AsyncEngine(Recorder):
    """Like ``AsyncEngine.begin()``: commits on a clean exit, rolls back on an error."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.started = asyncio.Event(), asyncio.Event()
        self.gate.set()
        self.gate_only: str | None = None  # gate only the transactions with such a batch

    @contextlib.asynccontextmanager
    async def begin(self):
        with self.transaction(AsyncConnection(self)) as connection:
            yield connection


class SyncConnection:
    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.batches: list[PendingBatch] = []

    def wait_at_gate(self) -> None:
        self.engine.started.set()
        assert self.engine.gate.wait(5), "the test never opened the gate"


class SyncEngine(Recorder):
    """Like ``Engine.begin()``, used from the writer thread."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.started = threading.Event(), threading.Event()
        self.gate.set()
        self.disposed = 0

    def begin(self):
        return self.transaction(SyncConnection(self))

    def dispose(self) -> None:
        self.disposed += 1


def build(kind, engine, **options):
    """A group commit of ``kind`` on ``engine`` storing with ``write``. Batches need no
    preparing here: where the group commit takes a ``prepare`` step (computing statement
    parameters in the request), it passes the batch on as it is."""
    if "prepare" in inspect.signature(kind).parameters:
        return kind(engine, lambda batch: batch, write, **options)
    return kind(engine, write, **options)


class Harness:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "tasks":
            self.engine: AsyncEngine | SyncEngine = AsyncEngine()
            self.group: GroupCommit | ThreadGroupCommit = build(GroupCommit, self.engine, writers=1)
        else:
            self.engine = SyncEngine()
            self.group = build(ThreadGroupCommit, self.engine)

    def submit(self, name: str, size: int = 1) -> asyncio.Task:
        return asyncio.create_task(self.group.submit(batch(name, size)))

    async def hold(self, name: str = "first") -> asyncio.Task:
        """Submit ``name`` and keep its transaction open until ``release()``."""
        self.engine.gate.clear()
        self.engine.started.clear()
        task = self.submit(name)
        if self.kind == "tasks":
            await asyncio.wait_for(self.engine.started.wait(), 1)
        else:
            assert await asyncio.to_thread(self.engine.started.wait, 1)
        return task

    def release(self) -> None:
        self.engine.gate.set()


async def settle() -> None:
    """Let every runnable task reach its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture(params=["tasks", "thread"])
async def harness(request):
    harness = Harness(request.param)
    yield harness
    harness.release()
    await harness.group.aclose()


async def test_an_idle_writer_commits_a_single_request_at_once(harness):
    outcome = await asyncio.wait_for(harness.group.submit(batch("alone", size=3)), 1)
    assert outcome.inserted == [0, 1, 2]
    assert harness.engine.committed == [["alone"]]
    if harness.kind == "thread":  # off the event loop's thread
        assert threading.current_thread().name not in harness.engine.threads


async def test_concurrent_submits_share_transactions_and_get_their_own_outcome(harness):
    first = await harness.hold()
    sizes = {f"r{n}": n + 1 for n in range(10)}
    waiting = [harness.submit(name, size) for name, size in sizes.items()]
    await settle()
    assert not any(task.done() for task in waiting)  # nobody is answered before its commit
    harness.release()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *waiting), 2)

    # Each request got the outcome of its own batch ...
    assert outcomes[0].inserted == [0]
    assert [o.inserted for o in outcomes[1:]] == [list(range(n)) for n in sizes.values()]
    # ... and eleven requests took two transactions: the held one, then all queued behind.
    assert harness.engine.committed == [["first"], list(sizes)]
    assert harness.engine.rolled_back == []


async def test_a_group_is_capped_in_events(harness, monkeypatch):
    monkeypatch.setattr(module, "MAX_GROUP_EVENTS", 5)
    first = await harness.hold()
    waiting = [harness.submit(f"r{n}", size=2) for n in range(6)]
    await settle()
    harness.release()
    await asyncio.wait_for(asyncio.gather(first, *waiting), 2)
    # Batches join a group while it holds fewer than 5 events: 2 + 2 + 2, twice.
    assert harness.engine.committed == [["first"], ["r0", "r1", "r2"], ["r3", "r4", "r5"]]


async def test_a_failing_group_is_retried_batch_by_batch(harness):
    first = await harness.hold()
    good_1 = harness.submit("good-1")
    bad = harness.submit("bad-1")
    good_2 = harness.submit("good-2", size=2)
    await settle()
    harness.release()
    await asyncio.wait_for(asyncio.wait([first, good_1, bad, good_2]), 2)

    # Only the failing batch's submitter sees the failure, as the database raised it.
    with pytest.raises(Refused):
        bad.result()
    assert good_1.result().inserted == [0]
    assert good_2.result().inserted == [0, 1]
    # The shared transaction was rolled back, then each batch had one of its own; the
    # good ones are committed without the bad one.
    assert harness.engine.calls == [
        ["first"],
        ["good-1", "bad-1", "good-2"],
        ["good-1"],
        ["bad-1"],
        ["good-2"],
    ]
    assert harness.engine.rolled_back == [["good-1", "bad-1", "good-2"], ["bad-1"]]
    assert harness.engine.committed == [["first"], ["good-1"], ["good-2"]]

    # The writer lives on for the next request.
    assert (await asyncio.wait_for(harness.group.submit(batch("after")), 1)).inserted == [0]


async def test_a_single_failing_batch_fails_only_its_request(harness):
    with pytest.raises(Refused):
        await asyncio.wait_for(harness.group.submit(batch("bad-alone")), 1)
    assert (await asyncio.wait_for(harness.group.submit(batch("next")), 1)).inserted == [0]
    assert harness.engine.rolled_back == [["bad-alone"]]
    assert harness.engine.committed == [["next"]]


async def test_aclose_commits_what_is_queued_before_stopping(harness):
    first = await harness.hold()
    queued = [harness.submit(f"q{n}") for n in range(3)]
    await settle()
    closing = asyncio.create_task(harness.group.aclose())
    await settle()
    assert not closing.done()  # it waits for the batches in hand

    # While closing, new work is turned away with a retryable problem.
    with pytest.raises(errors.Unavailable):
        await harness.group.submit(batch("late"))

    harness.release()
    await asyncio.wait_for(closing, 5)
    outcomes = await asyncio.wait_for(asyncio.gather(first, *queued), 1)
    assert all(outcome.inserted == [0] for outcome in outcomes)
    assert harness.engine.committed == [["first"], ["q0", "q1", "q2"]]
    assert harness.engine.rolled_back == []


async def test_a_submit_after_aclose_starts_the_writer_again(harness):
    await asyncio.wait_for(harness.group.submit(batch("before")), 1)
    await harness.group.aclose()
    outcome = await asyncio.wait_for(harness.group.submit(batch("after", size=2)), 1)
    assert outcome.inserted == [0, 1]
    await harness.group.aclose()
    assert (await asyncio.wait_for(harness.group.submit(batch("again")), 1)).inserted == [0]
    assert harness.engine.committed == [["before"], ["after"], ["again"]]


async def test_a_cancelled_request_still_has_its_batch_committed(harness):
    first = await harness.hold()
    impatient = harness.submit("impatient")
    await settle()
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    harness.release()
    await asyncio.wait_for(first, 1)
    await asyncio.wait_for(harness.group.submit(batch("later")), 1)
    # The client stopped waiting, but its events are stored (a resend is a duplicate).
    assert [name for t in harness.engine.committed for name in t] == [
        "first",
        "impatient",
        "later",
    ]


async def test_several_writer_tasks_do_not_wait_for_a_slow_transaction():
    engine = AsyncEngine()
    engine.gate_only = "slow"
    group = build(GroupCommit, engine, writers=2)
    try:
        engine.gate.clear()
        slow = asyncio.create_task(group.submit(batch("slow")))
        await asyncio.wait_for(engine.started.wait(), 1)
        quick = await asyncio.wait_for(group.submit(batch("quick")), 1)
        assert quick.inserted == [0] and not slow.done()
        assert engine.committed == [["quick"]]
        engine.gate.set()
        assert (await asyncio.wait_for(slow, 1)).inserted == [0]
        assert engine.committed == [["quick"], ["slow"]]
    finally:
        engine.gate.set()
        await group.aclose()
