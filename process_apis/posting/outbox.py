"""The outbox worker: drains pending ERP postings, whatever the ERP does.

- **Throttled** to the ERP's quota with a leaky bucket (aiolimiter), so Meterline does
  not earn the 429s it would otherwise provoke.
- **Retried** with tenacity on transient failures (timeouts, 5xx, 429, ambiguous
  commits): exponential backoff with jitter, never sooner than a Retry-After the ERP
  asked for. After ``attempts`` tries in a row, or when the ERP asks for a longer pause
  than ``max_inline_wait``, the document stays pending with its next attempt scheduled
  in the database, so a restart keeps the schedule.
- **Paused** by a circuit breaker (purgatory) after ``breaker_threshold`` consecutive
  failures: while it is open no call is made; the drain stops and resumes once the
  breaker lets a trial call through. Business refusals (closed period, unknown mapping)
  and throttling do not trip it: the ERP is up.
- **Never twice**: a document is leased to one worker at a time, and ``PostingService``
  resolves ambiguous commits by looking the document up by external_ref.

After each drain it follows the ERP's payments (``PaymentSync``), then recognises
revenue (``RevenueRecognizer``): its journals go to the ERP through the same throttle,
circuit breaker and retry policy.

Every gateway process on the embedded default runs one (``kick`` wakes it when
invoices are written), and ``meterline worker`` runs one on its own."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from aiolimiter import AsyncLimiter
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying

from canonical import errors
from canonical.model import Customer, ErpDocument, Invoice
from canonical.time import utcnow
from process_apis.background import BackgroundLoop
from process_apis.posting.payments import PaymentSync
from process_apis.posting.service import DrainResult, PostingService
from process_apis.retries import delay_after, transient_retrying
from process_apis.revenue.recognizer import RevenueRecognizer

__all__ = ["OutboxWorker", "PostingPolicy"]

log = logging.getLogger("meterline.posting.worker")

BREAKER = "erp"
T = TypeVar("T")


class PostingPolicy:
    """How hard the worker pushes the ERP (settings: ``METERLINE_ERP_*``)."""

    def __init__(
        self,
        *,
        quota_per_second: float = 10.0,
        attempts: int = 4,
        initial_backoff: float = 0.5,
        max_backoff: float = 60.0,
        max_inline_wait: float = 10.0,
        breaker_threshold: int = 5,
        breaker_reset_seconds: float = 30.0,
        lease: timedelta = timedelta(seconds=120),
        batch: int = 100,
    ) -> None:
        self.quota_per_second = quota_per_second
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_inline_wait = max_inline_wait
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_seconds = breaker_reset_seconds
        self.lease = lease
        self.batch = batch


class OutboxWorker(BackgroundLoop):
    name = "outbox-worker"

    def __init__(
        self,
        posting: PostingService,
        policy: PostingPolicy,
        *,
        interval: float = 5.0,
        payments: PaymentSync | None = None,
        revenue: RevenueRecognizer | None = None,
    ) -> None:
        super().__init__(interval=interval)
        self._posting = posting
        # Followed after each drain: the ERP's payments mark invoices paid.
        self._payments = payments
        # And then revenue: schedules for what was posted, journals for what is due.
        self._revenue = revenue
        self._policy = policy
        # Calls evenly spaced, no burst: an ERP counting its quota over any moving
        # second never sees more than it allows.
        self._limiter = AsyncLimiter(1, 1.0 / policy.quota_per_second)
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=policy.breaker_threshold,
            default_ttl=policy.breaker_reset_seconds,
            exclude=[
                errors.BusinessRuleViolation,
                errors.InvalidRequest,
                errors.NotFound,
                errors.SystemThrottled,  # the ERP answers; it only asks for patience
            ],
        )
        self._open_until = 0.0  # monotonic time before which the breaker is known open

    # -- draining --------------------------------------------------------------------------

    async def drain(self) -> DrainResult:
        """Post what is due now, until nothing is or the breaker opens."""
        result = DrainResult()
        customers: dict[str, Customer] = {}
        while not self.breaker_open() and not self.stopping:
            due = await self._posting.due(self._policy.batch)
            if not due:
                break
            claimed = await self._posting.claim(due, self.owner, self._policy.lease)
            if not claimed:
                break
            for invoice in claimed:
                if self.breaker_open() or self.stopping:
                    # Leave the rest for after the pause, without counting an attempt.
                    await self._posting.defer(
                        invoice.id, "ERP circuit open", self._reopens_at(), attempts=0
                    )
                    result.pending += 1
                    continue
                outcome = await self._post(invoice, customers)
                setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def _post(self, invoice: Invoice, customers: dict[str, Customer]) -> str:
        calls = 0
        retrying = self.retrying()
        try:
            async for attempt in retrying:
                with attempt:
                    calls += 1
                    document = await self._call(invoice, customers)
        except OpenedState:
            self._opened()
            await self._posting.defer(
                invoice.id, "ERP circuit open", self._reopens_at(), attempts=calls - 1
            )
            return "pending"
        except errors.UpstreamError as exc:
            if not exc.transient:
                await self._posting.fail(invoice, exc)
                return "failed"
            await self._posting.defer(
                invoice.id,
                f"{exc.code}: {exc.detail}",
                # The next step of the schedule after the calls made in this go.
                utcnow() + timedelta(seconds=delay_after(retrying, exc, calls + 1)),
                attempts=calls,
            )
            return "pending"
        except (errors.BusinessRuleViolation, errors.InvalidRequest, errors.NotFound) as exc:
            await self._posting.fail(invoice, exc)
            return "failed"
        await self._posting.mark_posted(invoice.id, document, attempts=calls)
        return "posted"

    async def _call(self, invoice: Invoice, customers: dict[str, Customer]) -> ErpDocument:
        return await self.guarded(functools.partial(self._posting.submit, invoice, customers))

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """One ERP call within the quota and through the circuit breaker."""
        async with self._limiter, await self._breakers.get_breaker(BREAKER):
            return await call()

    def retrying(self) -> AsyncRetrying:
        """The retries of one ERP post: never a longer inline wait than the policy allows
        (a longer pause asked for leaves the work for later, not the worker asleep)."""
        policy = self._policy
        return transient_retrying(
            attempts=policy.attempts,
            initial=policy.initial_backoff,
            most=policy.max_backoff,
            max_wait=policy.max_inline_wait,
        )

    def _opened(self) -> None:
        """The breaker refused a call: no more until it lets a trial call through."""
        self._open_until = time.monotonic() + self._policy.breaker_reset_seconds
        log.warning("ERP circuit open: posting paused for %ss", self._policy.breaker_reset_seconds)

    def _reopens_at(self):
        return utcnow() + timedelta(seconds=max(0.0, self._open_until - time.monotonic()))

    # -- running in the background ---------------------------------------------------------

    async def round(self) -> None:
        result = await self.drain()
        if result.posted or result.failed or result.pending:
            log.info(
                "outbox: posted=%s failed=%s pending=%s",
                result.posted,
                result.failed,
                result.pending,
            )
        if self._payments is not None and not self.breaker_open() and not self.stopping:
            try:
                await self._payments.sync()
            except errors.UpstreamError as exc:
                log.warning("ERP unavailable for the payment sync: %s", exc.detail)
        if self._revenue is not None and not self.breaker_open() and not self.stopping:
            try:
                done = await self._revenue.recognise(utcnow().date(), self.guarded, self.retrying)
            except OpenedState:
                self._opened()
            else:
                if any(done.values()):
                    log.info("revenue: %s", done)

    def pause(self) -> float:
        if self.breaker_open():  # try again as soon as the breaker lets a call through
            return min(self._interval, self._open_until - time.monotonic())
        return self._interval
