"""Group commit: concurrent ingest requests share one database transaction.

Each request hands its batch to a writer task and waits. While the writer commits one
group, the batches arriving meanwhile queue up and become the next group, so under load
many requests pay for one commit, and when idle a request is committed at once (no timer
to wait for). Every request is answered only after the commit that stored its events.

If a group's transaction fails, its batches are retried one transaction each, so that
one bad batch fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import errors
from process_apis.usage.batch import CommitOutcome, PendingBatch

__all__ = ["GroupCommit", "WriteBatches"]

log = logging.getLogger(__name__)

WriteBatches = Callable[[AsyncSession, list[PendingBatch]], Awaitable[list[CommitOutcome]]]
_Item = tuple[PendingBatch, asyncio.Future]


class GroupCommit:
    def __init__(
        self,
        sessions: async_sessionmaker,
        write: WriteBatches,
        *,
        writers: int = 1,
        max_group_events: int = 20_000,
    ) -> None:
        self._sessions = sessions
        self._write = write
        self._writers = writers
        self._max_group_events = max_group_events
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    async def submit(self, batch: PendingBatch) -> CommitOutcome:
        """Store ``batch`` durably; returns once its transaction has committed."""
        if self._closing:
            raise errors.Unavailable("ingest is shutting down; retry against another instance")
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # started on first use, per loop
            self._queue, self._loop = asyncio.Queue(), loop
            self._tasks = [
                asyncio.create_task(self._run(), name=f"ingest-group-commit-{n}")
                for n in range(self._writers)
            ]
        future = loop.create_future()
        self._queue.put_nowait((batch, future))
        # A cancelled request leaves its batch to be committed (the client resends it
        # and is told it is a duplicate); only the wait is given up.
        return await asyncio.shield(future)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writers. A later ``submit`` starts them
        again (an ASGI server may run the app's startup after a shutdown)."""
        if self._queue is None or self._loop is not asyncio.get_running_loop():
            self._queue = None
            return
        self._closing = True
        try:
            await self._stop(timeout)
        finally:
            self._queue, self._tasks, self._closing = None, [], False

    async def _stop(self, timeout: float) -> None:
        assert self._queue is not None
        for _ in self._tasks:
            self._queue.put_nowait(None)
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                _fail(item[1], errors.Unavailable("ingest stopped before this batch was stored"))

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            item = await queue.get()
            if item is None:
                return
            group, events = [item], item[0].size
            while events < self._max_group_events and not queue.empty():
                more = queue.get_nowait()
                if more is None:  # closing: commit this group, then stop
                    queue.put_nowait(None)
                    break
                group.append(more)
                events += more[0].size
            try:
                await self._commit(group)
            except asyncio.CancelledError:
                for _, future in group:
                    _fail(future, errors.Unavailable("ingest stopped while storing this batch"))
                raise

    async def _commit(self, group: list[_Item]) -> None:
        try:
            outcomes = await self._transaction([batch for batch, _ in group])
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            log.warning(
                "group commit of %d batches failed (%r); retrying one by one", len(group), exc
            )
            for item in group:
                await self._commit([item])
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _transaction(self, batches: list[PendingBatch]) -> list[CommitOutcome]:
        async with self._sessions.begin() as session:
            return await self._write(session, batches)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
