"""The background runner of billing runs: executes queued runs and resumes runs whose
runner died (their lease ran out), one at a time per process.

Every gateway process (on the embedded default) and every ``meterline worker`` has one.
``kick`` wakes it when a run is queued here; otherwise it looks for work every
``interval`` seconds, which is how a run queued by another process, or abandoned by a
crashed one, is picked up."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import uuid
from collections.abc import Callable

from process_apis.audit import audit_actor
from process_apis.billing.runs import BillingRunService

__all__ = ["BillingRunner"]

log = logging.getLogger("meterline.billing.runner")


class BillingRunner:
    def __init__(
        self,
        runs: BillingRunService,
        *,
        interval: float = 5.0,
        after_run: Callable[[], None] | None = None,
    ) -> None:
        self._runs = runs
        self._interval = interval
        # Called after each run this runner executed (wakes the outbox worker).
        self._after_run = after_run
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def kick(self) -> None:
        """Start the runner in this event loop if needed, and have it look for work now."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._wake = loop, asyncio.Event()
            self._task = asyncio.create_task(
                self._loop_forever(),
                name="billing-runner",
                # Not the context of the request that woke it: its client and
                # correlation ID belong to that request, not to the work that follows.
                context=contextvars.Context(),
            )
        assert self._wake is not None
        self._wake.set()

    async def run_pending(self) -> int:
        """Execute every run there is to execute now; returns how many ran."""
        ran = 0
        while True:
            claimable = await self._runs.claimable()
            executed = 0
            for run_id in claimable:
                if await self._runs.execute(run_id, owner=self.owner):
                    executed += 1
                    if self._after_run is not None:
                        self._after_run()
            ran += executed
            if not executed:
                return ran

    async def _loop_forever(self) -> None:
        assert self._wake is not None
        wake = self._wake
        audit_actor.set("worker")  # this task's own context: what it changes, it did
        while True:
            wake.clear()
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the runner
                log.exception("billing runner: looking for runs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._interval)

    async def aclose(self) -> None:
        """Stop; a run in progress is released, so that a runner resumes it at once."""
        task, self._task = self._task, None
        if task is None or self._loop is not asyncio.get_running_loop():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # else its lease runs out, later
            await self._runs.release(self.owner)
