"""Retrying calls to wrapped systems on transient failures (timeouts, 5xx, 429,
maintenance): tenacity, with exponential backoff and jitter, never sooner than a
``Retry-After`` the system asked for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from canonical import errors

__all__ = ["asked_wait", "delay_after", "transient", "transient_retrying"]


def transient(exc: BaseException) -> bool:
    return isinstance(exc, errors.UpstreamError) and exc.transient


def asked_wait(exc: BaseException | None) -> float:
    """Seconds the system asked to wait (Retry-After, a maintenance window's end), or 0."""
    return getattr(exc, "retry_after", None) or 0.0


def transient_retrying(
    *,
    attempts: int = 5,
    initial: float = 0.2,
    most: float = 10.0,
    max_wait: float | None = None,
    before_pause: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncRetrying:
    """``async for attempt in transient_retrying(): with attempt: ...``; the last error
    is raised when the attempts run out (the caller holds or defers the work). With
    ``max_wait``, a failure asking for a longer pause is raised at once (the caller
    schedules it rather than sleeping). ``before_pause(seconds)`` is awaited before each
    pause (a caller holding a lease extends it: waiting is not stalling)."""
    backoff = wait_exponential_jitter(initial=initial, max=most)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(asked_wait(exc), backoff(state))

    def retryable(exc: BaseException) -> bool:
        return transient(exc) and (max_wait is None or asked_wait(exc) <= max_wait)

    async def pausing(state: RetryCallState) -> None:
        if before_pause is not None and state.next_action is not None:
            await before_pause(state.next_action.sleep)

    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=stop_after_attempt(attempts),
        before_sleep=pausing,
        reraise=True,
    )


def delay_after(retrying: AsyncRetrying, exc: BaseException, attempts: int) -> float:
    """Seconds ``retrying`` would wait after ``attempts`` calls failing with ``exc``: when
    the next attempt is scheduled for later instead of waited for."""
    state = RetryCallState(retry_object=retrying, fn=None, args=(), kwargs={})
    state.attempt_number = attempts
    state.set_exception((type(exc), exc, exc.__traceback__))
    return retrying.wait(state)
