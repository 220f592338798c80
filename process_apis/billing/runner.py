"""The background runner of billing runs: executes queued runs and resumes runs whose
runner died (their lease ran out), one at a time per process.

Every gateway process (on the embedded default) and every ``meterline worker`` has one.
``kick`` wakes it when a run is queued here; otherwise it looks for work every
``interval`` seconds, which is how a run queued by another process, or abandoned by a
crashed one, is picked up."""

from __future__ import annotations

from collections.abc import Callable

from process_apis.background import BackgroundLoop
from process_apis.billing.runs import BillingRunService

__all__ = ["BillingRunner"]


class BillingRunner(BackgroundLoop):
    name = "billing-runner"

    def __init__(
        self,
        runs: BillingRunService,
        *,
        interval: float = 5.0,
        after_run: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(interval=interval)
        self._runs = runs
        # Called after each run this runner executed (wakes the outbox worker).
        self._after_run = after_run

    async def run_pending(self) -> int:
        """Execute every run there is to execute now; returns how many ran."""
        ran = 0
        while not self.stopping:
            claimable = await self._runs.claimable()
            executed = 0
            for run_id in claimable:
                if self.stopping:
                    break
                if await self._runs.execute(run_id, owner=self.owner):
                    executed += 1
                    if self._after_run is not None:
                        self._after_run()
            ran += executed
            if not executed:
                break
        return ran

    async def round(self) -> None:
        # Drafts whose grace window is over are finalized by a run of their period.
        await self._runs.start_finalizing()
        await self.run_pending()

    async def stopped(self) -> None:
        """A run cut short is released, so that a runner resumes it at once (else its
        lease runs out, later)."""
        await self._runs.release(self.owner)
