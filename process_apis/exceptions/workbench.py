"""What finance does with an exception: retry the work that raised it, once the cause is
fixed, or resolve it by hand.

Retry re-drives the work, per kind:

- ``posting_failed``: the document goes back into the outbox, due now; the exception
  closes when the ERP takes it (or opens again, with the new reason, when it refuses).
- ``billing_failed``: a billing run for that customer and period is started; the
  exception closes when the subscription is billed.
- ``unknown_customer`` / ``unknown_event_type``: the stored events are matched again
  now; the exception closes if the mapping exists, and the next run bills them.
- ``revenue_posting_failed``: the recognition journal is sent again with the next round
  of the outbox worker; the exception closes when the ERP books it.

Other kinds have nothing to re-drive (reconciliation variances, for instance): they are
resolved by hand, with a note saying what was done."""

from __future__ import annotations

from collections.abc import Callable

from canonical import errors
from canonical.model import ExceptionRecord
from canonical.time import Period
from process_apis.billing.runs import BillingRunService
from process_apis.exceptions.service import ExceptionService
from process_apis.posting.service import PostingService
from process_apis.revenue.recognizer import FAILED_KIND as REVENUE_FAILED
from process_apis.revenue.recognizer import RevenueRecognizer
from process_apis.usage.service import UsageService

__all__ = ["RETRYABLE", "ExceptionWorkbench"]

RETRYABLE = (
    "posting_failed",
    "billing_failed",
    "unknown_customer",
    "unknown_event_type",
    REVENUE_FAILED,
)


class ExceptionWorkbench:
    def __init__(
        self,
        exceptions: ExceptionService,
        posting: PostingService,
        billing_runs: BillingRunService,
        usage: UsageService,
        revenue: RevenueRecognizer,
        *,
        wake_outbox: Callable[[], None] = lambda: None,
        wake_runner: Callable[[], None] = lambda: None,
    ) -> None:
        self._exceptions = exceptions
        self._posting = posting
        self._billing_runs = billing_runs
        self._usage = usage
        self._revenue = revenue
        # Where this process does the background work, it starts on it at once.
        self._wake_outbox = wake_outbox
        self._wake_runner = wake_runner

    async def retry(self, exception_id: str) -> ExceptionRecord:
        record = await self._exceptions.get(exception_id)
        if record.status != "open":
            raise errors.InvalidTransition(
                f"exception {exception_id} is {record.status}; there is nothing to retry",
                status=record.status,
            )
        subject = record.context["subject"]
        if record.kind == "posting_failed":
            if await self._posting.requeue(subject):
                self._wake_outbox()
        elif record.kind == "billing_failed":
            await self._billing_runs.start(
                Period.parse(record.context["period"]), [record.context["customer_id"]]
            )
            self._wake_runner()
        elif record.kind in ("unknown_customer", "unknown_event_type"):
            await self._usage.rematch()
        elif record.kind == REVENUE_FAILED:
            if await self._revenue.requeue(subject):
                self._wake_outbox()
        else:
            raise errors.InvalidTransition(
                f"exceptions of kind {record.kind} have no work to retry; resolve them with "
                f"a note once fixed (retryable kinds: {', '.join(RETRYABLE)})",
                kind=record.kind,
            )
        await self._exceptions.record_retry(exception_id)
        return await self._exceptions.get(exception_id)

    async def resolve(self, exception_id: str, *, by: str, note: str) -> ExceptionRecord:
        return await self._exceptions.resolve(exception_id, by=by, note=note)
