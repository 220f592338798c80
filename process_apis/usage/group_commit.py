"""Group commit: concurrent ingest requests share one database transaction.

Each request hands its batch to a writer and waits. While the writer commits one group,
the batches arriving meanwhile queue up and become the next group, so under load many
requests pay for one commit, and when idle a request is committed at once (no timer to
wait for). Every request is answered only after the commit that stored its events.

If a group's transaction fails, its batches are retried one transaction each, so that
one bad batch fails only its own request.

Two writers share that behaviour:

- ``ThreadGroupCommit`` (SQLite, a single writer anyway): a thread of its own with a
  synchronous connection takes batches from a thread-safe queue, so a transaction and
  the next one never wait for the event loop, busy with the next requests, to come
  round; only the answers go back through it.
- ``GroupCommit`` (PostgreSQL): writer tasks on the event loop, several at a time, each
  transaction on the async engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from canonical import errors
from process_apis.usage.batch import CommitOutcome, PendingBatch

__all__ = ["GroupCommit", "ThreadGroupCommit", "WriteBatches"]

log = logging.getLogger(__name__)

# Prepares a batch for writing, outside the writer (``writer.prepare``), and writes prepared
# batches in the transaction of the connection it is given (``writer.write_batches``).
Prepare = Callable[[PendingBatch], Any]
WriteBatches = Callable[[sa.Connection, list[Any]], list[CommitOutcome]]
MAX_GROUP_EVENTS = 20_000
LOCK_CONFLICT_ATTEMPTS = 5
# PostgreSQL's deadlock_detected and serialization_failure: retrying is the remedy.
_LOCK_CONFLICTS = {"40P01", "40001"}


def _is_lock_conflict(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _LOCK_CONFLICTS


def _closing() -> errors.Unavailable:
    return errors.Unavailable("ingest is shutting down; retry against another instance")


def _stopped() -> errors.Unavailable:
    return errors.Unavailable("ingest stopped before this batch was stored")


class _Waiter:
    """A request waiting for its batch, answered from whichever thread commits it."""

    __slots__ = ("batch", "future", "loop", "prepared")

    def __init__(self, batch: PendingBatch, prepared: Any) -> None:
        self.batch = batch
        self.prepared = prepared
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[CommitOutcome] = self.loop.create_future()

    def answer(self, outcome: CommitOutcome | None = None, error: BaseException | None = None):
        def settle() -> None:
            if self.future.done():  # the request gave up waiting
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(outcome)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            self.loop.call_soon_threadsafe(settle)

    async def wait(self) -> CommitOutcome:
        # A cancelled request leaves its batch to be committed (the client resends it
        # and is told it is a duplicate); only the wait is given up.
        return await asyncio.shield(self.future)


def _group(first: _Waiter, take: Callable[[], _Waiter | None]) -> list[_Waiter]:
    """``first`` and what else is queued, up to MAX_GROUP_EVENTS; ``take`` returns the
    next queued waiter or None (nothing queued, or a stop marker it puts back)."""
    group, events = [first], first.batch.size
    while events < MAX_GROUP_EVENTS and (more := take()) is not None:
        group.append(more)
        events += more.batch.size
    return group


class ThreadGroupCommit:
    """Group commit in a writer thread with a synchronous engine (SQLite)."""

    def __init__(self, engine: sa.Engine, prepare: Prepare, write: WriteBatches) -> None:
        self._engine = engine
        self._prepare = prepare
        self._write = write
        self._queue: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._closing = False

    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store ``batch`` durably; returns once its transaction has committed."""
        if self._closing:
            raise _closing()
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
                self._thread.start()
        waiter = _Waiter(batch, self._prepare(batch))
        self._queue.put(waiter)
        return await waiter.wait()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread. A later ``submit`` starts it
        again (an ASGI server may run the app's startup after a shutdown)."""
        thread = self._thread
        if thread is not None:
            self._closing = True
            try:
                self._queue.put(None)
                await asyncio.to_thread(thread.join, timeout)
                while True:  # left behind by a thread that did not stop in time
                    try:
                        waiter = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if waiter is not None:
                        waiter.answer(error=_stopped())
            finally:
                self._thread, self._closing = None, False
        self._engine.dispose()

    def _take(self) -> _Waiter | None:
        try:
            waiter = self._queue.get_nowait()
        except queue.Empty:
            return None
        if waiter is None:  # stop marker: commit this group first
            self._queue.put(None)
        return waiter

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            self._commit(_group(first, self._take))

    def _commit(self, group: list[_Waiter]) -> None:
        try:
            with self._engine.begin() as connection:
                outcomes = self._write(connection, [waiter.prepared for waiter in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].answer(error=exc)
                return
            log.warning("group commit of %d batches failed (%r); one by one", len(group), exc)
            for waiter in group:
                self._commit([waiter])
            return
        for waiter, outcome in zip(group, outcomes, strict=True):
            waiter.answer(outcome)


class GroupCommit:
    """Group commit in writer tasks on the event loop with the async engine."""

    def __init__(
        self, engine: AsyncEngine, prepare: Prepare, write: WriteBatches, *, writers: int = 4
    ) -> None:
        self._engine = engine
        self._prepare = prepare
        self._write = write
        self._writers = writers
        self._queue: asyncio.Queue[_Waiter | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store ``batch`` durably; returns once its transaction has committed."""
        if self._closing:
            raise _closing()
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # started on first use, per loop
            self._queue, self._loop = asyncio.Queue(), loop
            self._tasks = [
                asyncio.create_task(self._run(self._queue), name=f"ingest-writer-{n}")
                for n in range(self._writers)
            ]
        waiter = _Waiter(batch, self._prepare(batch))
        self._queue.put_nowait(waiter)
        return await waiter.wait()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writers; a later ``submit`` restarts."""
        if self._queue is None or self._loop is not asyncio.get_running_loop():
            self._queue = None
            return
        self._closing = True
        try:
            for _ in self._tasks:
                self._queue.put_nowait(None)
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            while not self._queue.empty():
                waiter = self._queue.get_nowait()
                if waiter is not None:
                    waiter.answer(error=_stopped())
        finally:
            self._queue, self._tasks, self._closing = None, [], False

    async def _run(self, queue_: asyncio.Queue[_Waiter | None]) -> None:
        def take() -> _Waiter | None:
            if queue_.empty():
                return None
            waiter = queue_.get_nowait()
            if waiter is None:
                queue_.put_nowait(None)
            return waiter

        while (first := await queue_.get()) is not None:
            group = _group(first, take)
            try:
                await self._commit(group)
            except asyncio.CancelledError:
                for waiter in group:
                    waiter.answer(error=_stopped())
                raise

    async def _commit(self, group: list[_Waiter]) -> None:
        try:
            # Concurrent transactions inserting the same new keys can deadlock (PostgreSQL
            # then aborts one); such a transaction is simply tried again.
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_lock_conflict),
                stop=stop_after_attempt(LOCK_CONFLICT_ATTEMPTS),
                wait=wait_random_exponential(multiplier=0.02, max=0.5),
                reraise=True,
            ):
                with attempt:
                    async with self._engine.begin() as connection:
                        outcomes = await connection.run_sync(
                            self._write, [waiter.prepared for waiter in group]
                        )
        except Exception as exc:
            if len(group) == 1:
                group[0].answer(error=exc)
                return
            log.warning("group commit of %d batches failed (%r); one by one", len(group), exc)
            for waiter in group:
                await self._commit([waiter])
            return
        for waiter, outcome in zip(group, outcomes, strict=True):
            waiter.answer(outcome)
