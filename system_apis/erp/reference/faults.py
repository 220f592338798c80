"""Fault injection for the reference ERP, so the process layer can be tested against a
misbehaving ERP (chaos tests, demos) without a real one.

``FaultyErp`` wraps any ``ErpPort`` and fails the way a remote ERP behind
``system_apis.remote`` does: the same error classes, raised for the same reasons, so the
process layer cannot tell the two apart. Per call, in this order:

1. latency (``latency_ms`` plus up to ``latency_jitter_ms``), as a network round trip;
2. a maintenance window: ``SystemUnavailable`` (``retry_after``: seconds until
   the window ends);
3. the ERP's own quota (moving window, ``limits``): ``SystemThrottled`` with
   ``retry_after`` seconds until a slot frees;
4. ``error_rate``: ``SystemUnavailable``, like a 503;
5. the inner call; then, for postings and payments only (the writes a caller repeats by
   ``external_ref``), ``ambiguous_rate``: the document or payment is committed but the
   answer is lost (``AmbiguousCommit``, like a timed-out POST).

With no fault configured a call goes straight to the inner ERP: no sleep, no clock, no
random draw. Faults come from a compact string (``ErpFaults.parse``), e.g.
``latency_ms=5,error_rate=0.1,quota_per_second=20,ambiguous_rate=0.05,
maintenance=2026-11-21T10:00:00Z/2026-11-21T10:05:00Z`` (repeat ``maintenance`` for
several windows).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from canonical.errors import AmbiguousCommit, SystemThrottled, SystemUnavailable
from canonical.model import (
    ErpDocument,
    ErpInvoice,
    ErpItem,
    ErpPayment,
    ErpPaymentIn,
    ErpRevenueJournal,
    LegalEntity,
    RevenueJournal,
)
from canonical.time import as_utc, utcnow
from system_apis.erp.port import AccountingPeriod, ErpPort, PeriodStatus

__all__ = ["ErpFaults", "FaultyErp", "MaintenanceWindow"]

# The quota's window is at most an hour long, so the slowest quota is one call an hour.
_MAX_QUOTA_WINDOW = 3600


class MaintenanceWindow(msgspec.Struct, frozen=True):
    """[start, end) in UTC; both timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("maintenance window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(
                f"maintenance window must end after it starts ({self.start}, {self.end})"
            )

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _check_number(name: str, value: object, low: float, high: float = math.inf) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        bounds = f"between {low:g} and {high:g}" if high != math.inf else f"at least {low:g}"
        raise ValueError(f"erp faults: {name} must be a number {bounds}, got {value!r}")


class ErpFaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    latency_ms: float = 0
    latency_jitter_ms: float = 0
    error_rate: float = 0  # share of calls answered SystemUnavailable (503)
    quota_per_second: float | None = None  # None: no quota
    maintenance: tuple[MaintenanceWindow, ...] = ()
    ambiguous_rate: float = 0  # share of postings/payments committed, answer then lost
    seed: int | None = None  # for repeatable draws (error, jitter, ambiguity)

    def __post_init__(self) -> None:
        _check_number("latency_ms", self.latency_ms, 0)
        _check_number("latency_jitter_ms", self.latency_jitter_ms, 0)
        _check_number("error_rate", self.error_rate, 0, 1)
        _check_number("ambiguous_rate", self.ambiguous_rate, 0, 1)
        if self.quota_per_second is not None:
            _check_number("quota_per_second", self.quota_per_second, 1 / _MAX_QUOTA_WINDOW)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ValueError(f"erp faults: seed must be an integer, got {self.seed!r}")
        for window in self.maintenance:
            if not isinstance(window, MaintenanceWindow):
                raise ValueError(f"erp faults: not a MaintenanceWindow: {window!r}")

    @property
    def active(self) -> bool:
        """Whether any fault is configured (the seed alone is none)."""
        return bool(
            self.latency_ms
            or self.latency_jitter_ms
            or self.error_rate
            or self.quota_per_second is not None
            or self.maintenance
            or self.ambiguous_rate
        )

    @classmethod
    def parse(cls, text: str) -> ErpFaults:
        """``key=value`` pairs joined by commas; ``maintenance=START/END`` (ISO 8601 with a
        zone, e.g. ``Z``) may repeat. An empty string means no faults."""
        fields: dict[str, Any] = {}
        windows: list[MaintenanceWindow] = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = (part.strip() for part in item.partition("="))
            if not sep or not value:
                raise ValueError(f"erp faults: expected key=value, got {item!r}")
            if key == "maintenance":
                windows.append(_parse_window(value))
                continue
            if key not in _PARSERS:
                known = ", ".join(sorted([*_PARSERS, "maintenance"]))
                raise ValueError(f"erp faults: unknown key {key!r} (known: {known})")
            if key in fields:
                raise ValueError(f"erp faults: {key} given twice")
            convert = _PARSERS[key]
            try:
                fields[key] = convert(value)
            except ValueError:
                kind = "an integer" if convert is int else "a number"
                raise ValueError(f"erp faults: {key} must be {kind}, got {value!r}") from None
        return cls(maintenance=tuple(windows), **fields)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "latency_ms": float,
    "latency_jitter_ms": float,
    "error_rate": float,
    "quota_per_second": float,
    "ambiguous_rate": float,
    "seed": int,
}


def _parse_window(value: str) -> MaintenanceWindow:
    start, sep, end = value.partition("/")
    try:
        if not sep:
            raise ValueError("expected START/END")
        bounds = [datetime.fromisoformat(part.strip()) for part in (start, end)]
        if any(b.tzinfo is None for b in bounds):
            raise ValueError("both bounds need a time zone, e.g. Z")
        return MaintenanceWindow(as_utc(bounds[0]), as_utc(bounds[1]))
    except ValueError as exc:
        raise ValueError(f"erp faults: bad maintenance window {value!r}: {exc}") from None


def _quota_item(per_second: float) -> RateLimitItemPerSecond:
    # ``limits`` counts whole calls per whole seconds: 2.5/s becomes 5 per 2 s.
    rate = Fraction(per_second).limit_denominator(_MAX_QUOTA_WINDOW)
    return RateLimitItemPerSecond(max(rate.numerator, 1), rate.denominator, namespace="ERP")


class FaultyErp:
    """An ``ErpPort`` that applies ``faults`` around every call to ``inner``.

    ``stats`` counts ``calls`` and the faults injected: ``delayed``, ``maintenance``,
    ``throttled``, ``unavailable``, ``ambiguous``. ``clock`` (aware UTC datetimes) decides
    maintenance windows; the quota runs on the wall clock, as ``limits`` does. ``sleep``
    is injectable so tests need not wait out the latency."""

    def __init__(
        self,
        inner: ErpPort,
        faults: ErpFaults,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        system: str = "erp",
    ) -> None:
        self.inner = inner
        self.faults = faults
        self.system = system
        self.stats: Counter[str] = Counter()
        self._active = faults.active
        self._clock = clock or utcnow
        self._sleep = sleep
        self._random = random.Random(faults.seed)
        self._quota: RateLimitItemPerSecond | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        if faults.quota_per_second is not None:
            self._quota = _quota_item(faults.quota_per_second)
            self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def _enter(self) -> None:
        """Latency, then maintenance, quota and error faults, before the inner call."""
        faults = self.faults
        delay = faults.latency_ms
        if faults.latency_jitter_ms:
            delay += self._random.uniform(0, faults.latency_jitter_ms)
        if delay > 0:
            self.stats["delayed"] += 1
            await self._sleep(delay / 1000)
        if faults.maintenance:
            now = as_utc(self._clock())
            ends = [w.end for w in faults.maintenance if w.contains(now)]
            if ends:
                until = max(ends)
                self.stats["maintenance"] += 1
                raise SystemUnavailable(
                    f"{self.system}: down for maintenance until {until.isoformat()} "
                    "(injected fault)",
                    system=self.system,
                    retry_after=(until - now).total_seconds(),
                )
        if self._quota and self._limiter and not await self._limiter.hit(self._quota, self.system):
            stats = await self._limiter.get_window_stats(self._quota, self.system)
            self.stats["throttled"] += 1
            raise SystemThrottled(
                f"{self.system}: API quota of {faults.quota_per_second:g}/s exceeded "
                "(injected fault)",
                retry_after=max(stats.reset_time - time.time(), 0.001),
                system=self.system,
            )
        if faults.error_rate and self._random.random() < faults.error_rate:
            self.stats["unavailable"] += 1
            raise SystemUnavailable(
                f"{self.system}: Service Unavailable (injected fault)", system=self.system
            )

    def _lose_answer(self, method: str) -> None:
        """After a committed posting or payment: drop its answer, ``ambiguous_rate`` of
        the time."""
        rate = self.faults.ambiguous_rate
        if rate and self._random.random() < rate:
            self.stats["ambiguous"] += 1
            raise AmbiguousCommit(
                f"{self.system}: {method} timed out (injected fault: it did commit)",
                system=self.system,
            )

    # --- the port: each call counts, then faults apply only if configured --------------

    async def put_legal_entity(self, entity: LegalEntity) -> LegalEntity:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.put_legal_entity(entity)

    async def get_legal_entity(self, entity_id: str) -> LegalEntity:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.get_legal_entity(entity_id)

    async def list_legal_entities(self) -> list[LegalEntity]:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.list_legal_entities()

    async def put_item(self, item: ErpItem) -> ErpItem:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.put_item(item)

    async def list_items(self) -> list[ErpItem]:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.list_items()

    async def set_period_status(
        self, legal_entity_id: str, period: str, status: PeriodStatus
    ) -> AccountingPeriod:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.set_period_status(legal_entity_id, period, status)

    async def get_period(self, legal_entity_id: str, period: str) -> AccountingPeriod:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.get_period(legal_entity_id, period)

    async def post_invoice(self, invoice: ErpInvoice) -> ErpDocument:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        document = await self.inner.post_invoice(invoice)
        if self._active:
            self._lose_answer("post_invoice")
        return document

    async def find_document(self, external_ref: str) -> ErpDocument | None:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.find_document(external_ref)

    async def get_document(self, document_id: str) -> ErpDocument:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.get_document(document_id)

    async def list_documents(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        customer_id: str | None = None,
    ) -> tuple[list[ErpDocument], bool]:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.list_documents(
            limit=limit, starting_after=starting_after, customer_id=customer_id
        )

    async def record_payment(self, payment: ErpPaymentIn) -> ErpPayment:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        recorded = await self.inner.record_payment(payment)
        if self._active:
            self._lose_answer("record_payment")
        return recorded

    async def list_payments(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[ErpPayment], bool]:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.list_payments(after=after, limit=limit)

    async def post_revenue_journal(self, journal: RevenueJournal) -> ErpRevenueJournal:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        posted = await self.inner.post_revenue_journal(journal)
        if self._active:
            self._lose_answer("post_revenue_journal")
        return posted

    async def find_revenue_journal(self, external_ref: str) -> ErpRevenueJournal | None:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.find_revenue_journal(external_ref)

    async def account_balances(
        self, legal_entity_id: str | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        self.stats["calls"] += 1
        if self._active:
            await self._enter()
        return await self.inner.account_balances(legal_entity_id, currency)
