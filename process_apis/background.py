"""Work a process does in the background: a loop woken when there is work and otherwise
looking for it every ``interval`` seconds (the billing runner, the outbox worker).

A loop belongs to the event loop that started it; ``kick`` in another event loop starts
another. Its task runs in a context of its own, not in that of the request that woke it
(whose client and correlation ID belong to that request), and audits as ``worker``.

Stopping is cooperative first: ``aclose`` asks the loop to stop, and the work checks
``stopping`` between units (a run, a document) and returns; only work still going after
``grace`` seconds is cancelled. Cancelling mid-transaction can leave a connection busy
for a while (SQLite's lock until the driver notices), so it is the last resort."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import uuid

from process_apis.audit import audit_actor

__all__ = ["BackgroundLoop"]

log = logging.getLogger("meterline.background")


class BackgroundLoop:
    name = "background"

    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        # Who holds the leases this loop takes (runs, outbox documents).
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def kick(self) -> None:
        """Start the loop in this event loop if needed, and have it work now."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._wake, self._stop = loop, asyncio.Event(), asyncio.Event()
            self._task = asyncio.create_task(
                self._forever(self._wake, self._stop),
                name=self.name,
                context=contextvars.Context(),
            )
        assert self._wake is not None
        self._wake.set()

    def wake(self) -> None:
        """Have the loop work now if it runs in this event loop; start nothing."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            assert self._wake is not None
            self._wake.set()

    async def round(self) -> None:
        """One round of work (subclasses)."""
        raise NotImplementedError

    def pause(self) -> float:
        """Seconds to wait for a kick before the next round."""
        return self._interval

    async def stopped(self) -> None:
        """Called once the loop has stopped (subclasses: give up leases)."""

    async def _forever(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        audit_actor.set("worker")
        while not stop.is_set():
            wake.clear()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the loop
                log.exception("%s: round failed; retrying", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.05, self.pause()))

    async def aclose(self, grace: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None or self._loop is not asyncio.get_running_loop():
            return
        assert self._stop is not None and self._wake is not None
        self._stop.set()
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("%s: still working after %ss; cancelled", self.name, grace)
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        try:
            await asyncio.wait_for(self.stopped(), 2.0)
        except Exception:  # closing goes on; what it left undone is only logged
            log.warning("%s: stopping did not complete", self.name, exc_info=True)
