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

__all__ = ["GroupCommit", "ThreadGroupCommit", "WriteBatches", "is_lock_conflict"]

log = logging.getLogger(__name__)

# Prepares a batch for writing, outside the writer (``writer.prepare``), and writes prepared
# batches in the transaction of the connection it is given (``writer.write_batches``).
Prepare = Callable[[PendingBatch], Any]
WriteBatches = Callable[[sa.Connection, list[Any]], list[CommitOutcome]]
MAX_GROUP_EVENTS = 20_000
LOCK_CONFLICT_ATTEMPTS = 5
# PostgreSQL's deadlock_detected and serialization_failure: retrying is the remedy.
_LOCK_CONFLICTS = {"40P01", "40001"}


def is_lock_conflict(exc: BaseException) -> bool:
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


# What is queued: the waiters of one submission, committed in the same group.
_Submission = list[_Waiter]


def _group(first: _Submission, take: Callable[[], _Submission | None]) -> list[_Waiter]:
    """``first`` and what else is queued, up to MAX_GROUP_EVENTS (a submission is never
    split); ``take`` returns the next queued submission or None (nothing queued, or a
    stop marker it puts back)."""
    group = list(first)
    events = sum(waiter.batch.size for waiter in first)
    while events < MAX_GROUP_EVENTS and (more := take()) is not None:
        group.extend(more)
        events += sum(waiter.batch.size for waiter in more)
    return group


def _submissions(waiters: list[_Waiter]) -> list[_Submission]:
    """Consecutive waiters in submissions of at most MAX_GROUP_EVENTS events each (a
    larger batch alone)."""
    submissions: list[_Submission] = [[]]
    events = 0
    for waiter in waiters:
        if submissions[-1] and events + waiter.batch.size > MAX_GROUP_EVENTS:
            submissions.append([])
            events = 0
        submissions[-1].append(waiter)
        events += waiter.batch.size
    return submissions


class _GroupCommitBase:
    """Submitting: what both writers share."""

    _closing = False

    def __init__(self, prepare: Prepare) -> None:
        self._prepare = prepare

    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store ``batch`` durably; returns once its transaction has committed."""
        (result,) = await self.submit_many([batch])
        if isinstance(result, BaseException):
            raise result
        return result

    async def submit_many(self, batches: list[PendingBatch]) -> list[CommitOutcome | BaseException]:
        """Store ``batches`` together: queued at once, so they share their transactions
        (one per MAX_GROUP_EVENTS events); each gets its outcome or its error."""
        if self._closing:
            raise _closing()
        self._ensure_started()
        waiters = [_Waiter(batch, self._prepare(batch)) for batch in batches]
        for submission in _submissions(waiters):
            self._put(submission)
        return await asyncio.gather(*(w.wait() for w in waiters), return_exceptions=True)

    def _ensure_started(self) -> None:
        raise NotImplementedError

    def _put(self, submission: _Submission) -> None:
        raise NotImplementedError


class ThreadGroupCommit(_GroupCommitBase):
    """Group commit in a writer thread with a synchronous engine (SQLite)."""

    def __init__(self, engine: sa.Engine, prepare: Prepare, write: WriteBatches) -> None:
        super().__init__(prepare)
        self._engine = engine
        self._write = write
        self._queue: queue.SimpleQueue[_Submission | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def _ensure_started(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
                self._thread.start()

    def _put(self, submission: _Submission) -> None:
        self._queue.put(submission)

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
                        submission = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    for waiter in submission or ():
                        waiter.answer(error=_stopped())
            finally:
                self._thread, self._closing = None, False
        self._engine.dispose()

    def _take(self) -> _Submission | None:
        try:
            submission = self._queue.get_nowait()
        except queue.Empty:
            return None
        if submission is None:  # stop marker: commit this group first
            self._queue.put(None)
        return submission

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


class GroupCommit(_GroupCommitBase):
    """Group commit in writer tasks on the event loop with the async engine."""

    def __init__(
        self, engine: AsyncEngine, prepare: Prepare, write: WriteBatches, *, writers: int = 4
    ) -> None:
        super().__init__(prepare)
        self._engine = engine
        self._write = write
        self._writers = writers
        self._queue: asyncio.Queue[_Submission | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # started on first use, per loop
            self._queue, self._loop = asyncio.Queue(), loop
            self._tasks = [
                asyncio.create_task(self._run(self._queue), name=f"ingest-writer-{n}")
                for n in range(self._writers)
            ]

    def _put(self, submission: _Submission) -> None:
        assert self._queue is not None
        self._queue.put_nowait(submission)

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
                for waiter in self._queue.get_nowait() or ():
                    waiter.answer(error=_stopped())
        finally:
            self._queue, self._tasks, self._closing = None, [], False

    async def _run(self, queue_: asyncio.Queue[_Submission | None]) -> None:
        def take() -> _Submission | None:
            if queue_.empty():
                return None
            submission = queue_.get_nowait()
            if submission is None:
                queue_.put_nowait(None)
            return submission

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
                retry=retry_if_exception(is_lock_conflict),
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
