"""Rate limits per client and route class, with the ``limits`` library's async API.

Policies come from settings ("100/second", several joined by ";") and are enforced with a
moving window (exact) or a sliding window counter (two counters per key, approximate).
Counters live in process memory by default and in Redis when ``redis_url`` is set, so
every gateway process draws on one budget.

When Redis cannot be reached the limiter fails open onto a local in-memory limiter: each
process then enforces the budget on its own (so the fleet allows up to N times the
budget) until Redis answers again. One warning is logged per outage, and Redis is probed
again only after a back-off, by a single request, so an outage costs neither a 500 nor a
connection timeout per request (see docs/adr/0006-rate-limits.md).

Responses carry the fields of draft-ietf-httpapi-ratelimit-headers-10::

    RateLimit-Policy: "read";q=200;w=1
    RateLimit: "read";r=199;t=1

and a refusal is a 429 problem (``rate_limited``) with ``Retry-After`` in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from canonical.access import Caller
from gateway.auth.middleware import is_automatic_options
from gateway.client_ip import TrustedProxies, client_ip
from gateway.errors import RateLimited
from gateway.settings import Settings

__all__ = [
    "POLICIES",
    "Decision",
    "RateLimitMiddleware",
    "RateLimits",
    "build_rate_limits",
    "client_identity",
]

log = logging.getLogger("meterline.rate_limit")

# Policy name -> the setting holding its limits.
POLICIES: Mapping[str, str] = {
    "ingest": "rate_limit_ingest",
    "read": "rate_limit_read",
    "write": "rate_limit_write",
    "billing_run": "rate_limit_billing_run",
    "system": "rate_limit_system",
    "partner": "rate_limit_partner",
    "token_ip": "rate_limit_token_ip",
    "token_client": "rate_limit_token_client",
}

# Fixed windows are left out on purpose: they let 2x the budget through around a boundary.
STRATEGIES: Mapping[str, type[RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}

# Route-class values of ``opt["rate_limit"]`` that are not policy names.
NOT_LIMITED = "none"
TOKEN_ENDPOINT = "token"

# A rate-limit call is one small Lua script: anything slower than this is an outage.
REDIS_SOCKET_TIMEOUT = 0.5
REDIS_CONNECT_TIMEOUT = 0.5
# How long to stay on the local limiter before probing Redis again.
REDIS_RETRY_SECONDS = 5.0


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one hit, described by the most restrictive item of the policy."""

    allowed: bool
    policy: str
    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: int


def _escape(identity: str) -> str:
    # ``limits`` joins key parts with "/": keep an identity from reaching into another part.
    return identity.replace("%", "%25").replace("/", "%2F")


def _tightest(decisions: list[Decision]) -> Decision:
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.reset_seconds)
    return min(decisions, key=lambda d: (d.remaining, -d.reset_seconds))


class RateLimits:
    """The policies and the limiter enforcing them; one per application."""

    def __init__(
        self,
        policies: Mapping[str, list[RateLimitItem]],
        *,
        strategy: str = "moving-window",
        shared_storage: Storage | None = None,
        trusted_proxies: TrustedProxies | None = None,
        retry_seconds: float = REDIS_RETRY_SECONDS,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        try:
            limiter_cls = STRATEGIES[strategy]
        except KeyError:
            raise ValueError(
                f"rate_limit_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}"
            ) from None
        self.policies = dict(policies)
        self.strategy = strategy
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self._local_storage = MemoryStorage()
        self._local = limiter_cls(self._local_storage)
        self._shared = limiter_cls(shared_storage) if shared_storage is not None else None
        self._retry_seconds = retry_seconds
        self._on_close = on_close
        # Outage state of the shared storage: down since when (None: healthy), when to
        # probe it again, and whether a probe is in flight.
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._probing = False

    # --- identities -------------------------------------------------------------------

    def client_ip(self, scope: Scope) -> str:
        return client_ip(scope, self.trusted_proxies)

    # --- hits -------------------------------------------------------------------------

    async def hit(self, policy: str, identity: str) -> Decision:
        """Spend one request of ``policy`` for ``identity`` (if any is left)."""
        try:
            items = self.policies[policy]
        except KeyError:
            raise ValueError(f"unknown rate-limit policy {policy!r}") from None
        ids = (policy, _escape(identity))
        if self._shared is None:
            return await self._hit(self._local, policy, items, ids)
        probe = self._down_since is not None
        if probe:
            if self._probing or time.monotonic() < self._retry_at:
                return await self._hit(self._local, policy, items, ids)
            self._probing = True
        try:
            decision = await self._hit(self._shared, policy, items, ids)
        except Exception as exc:  # any storage failure fails open onto the local limiter
            self._storage_failed(exc)
            return await self._hit(self._local, policy, items, ids)
        finally:
            if probe:
                self._probing = False
        if self._down_since is not None:
            log.warning(
                "rate-limit storage reachable again after %.0f s; budgets are shared again",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return decision

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._retry_at = now + self._retry_seconds
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "rate-limit storage unreachable (%s: %s); limiting per process until it "
                "answers again, next attempt in %.0f s",
                type(exc).__name__,
                exc,
                self._retry_seconds,
            )

    async def _hit(
        self,
        limiter: RateLimiter,
        policy: str,
        items: list[RateLimitItem],
        ids: tuple[str, str],
    ) -> Decision:
        # Stop at the first item that refuses, so a refused request does not spend the
        # items after it.
        refused: RateLimitItem | None = None
        for item in items:
            if not await limiter.hit(item, *ids):
                refused = item
                break
        if len(items) == 1:
            stats = [await limiter.get_window_stats(items[0], *ids)]
        else:
            stats = await asyncio.gather(*(limiter.get_window_stats(i, *ids) for i in items))
        now = time.time()
        described = [
            (item, max(0, s.remaining), max(0, math.ceil(s.reset_time - now)))
            for item, s in zip(items, stats, strict=True)
        ]
        if refused is not None:
            # Report the spent item whose window frees last: retrying earlier is pointless.
            spent = [d for d in described if d[0] is refused or d[1] == 0]
            item, _, reset = max(spent, key=lambda d: d[2])
            return Decision(
                allowed=False,
                policy=policy,
                limit=item.amount,
                window_seconds=item.get_expiry(),
                remaining=0,
                reset_seconds=max(1, reset),
            )
        item, remaining, reset = min(described, key=lambda d: (d[1], -d[2]))
        return Decision(
            allowed=True,
            policy=policy,
            limit=item.amount,
            window_seconds=item.get_expiry(),
            remaining=remaining,
            reset_seconds=reset,
        )

    # --- responses --------------------------------------------------------------------

    def headers(self, decision: Decision) -> dict[str, str]:
        """RateLimit-Policy and RateLimit (structured fields), plus Retry-After if refused."""
        name = f'"{decision.policy}"'
        headers = {
            "RateLimit-Policy": f"{name};q={decision.limit};w={decision.window_seconds}",
            "RateLimit": f"{name};r={decision.remaining};t={decision.reset_seconds}",
        }
        if not decision.allowed:
            headers["Retry-After"] = str(max(1, decision.reset_seconds))
        return headers

    def refusal(self, decision: Decision) -> RateLimited:
        return RateLimited(
            f"rate limit {decision.policy!r} exceeded ({decision.limit} requests per "
            f"{decision.window_seconds} s); retry in {max(1, decision.reset_seconds)} s",
            headers=self.headers(decision),
        )

    async def check(self, policy: str, identity: str) -> dict[str, str]:
        """Hit ``policy``; raise ``RateLimited`` when refused, else return the headers."""
        decision = await self.hit(policy, identity)
        if not decision.allowed:
            raise self.refusal(decision)
        return self.headers(decision)

    async def check_client(self, policy: str, client_id: str) -> dict[str, str]:
        """``check`` on a genuine client's own budget (its credentials were verified)."""
        return await self.check(policy, client_identity(client_id))

    async def aclose(self) -> None:
        timer = getattr(self._local_storage, "timer", None)
        if timer is not None and not timer.done():
            timer.cancel()
        if self._on_close is not None:
            await self._on_close()


def _policies(settings: Settings) -> dict[str, list[RateLimitItem]]:
    policies = {}
    for policy, field in POLICIES.items():
        value = getattr(settings, field)
        try:
            policies[policy] = parse_many(value)
        except ValueError:
            raise ValueError(
                f'{field}: not a rate limit ("100/second", several joined by ";"): {value!r}'
            ) from None
    return policies


def _limits_uri(redis_url: str) -> str:
    scheme, sep, rest = redis_url.partition("://")
    if not sep:
        raise ValueError(f"redis_url is not a URL: {redis_url!r}")
    if scheme.startswith("async+"):
        return redis_url
    if scheme == "unix":
        return f"async+redis+unix://{rest}"
    return f"async+{scheme}://{rest}"


def build_rate_limits(settings: Settings) -> RateLimits:
    """The limiter the settings describe: Redis-backed when ``redis_url`` is set."""
    policies = _policies(settings)
    trusted = TrustedProxies(settings.trusted_proxies)
    if not settings.redis_url:
        return RateLimits(policies, strategy=settings.rate_limit_strategy, trusted_proxies=trusted)

    import redis.asyncio as aioredis

    # Our own pool: short timeouts, no retries (the local limiter is the retry), and
    # something to close on shutdown.
    pool = aioredis.ConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
    )
    storage = RedisStorage(
        _limits_uri(settings.redis_url),
        implementation="redispy",
        key_prefix=f"{settings.redis_key_prefix}:ratelimit",
        connection_pool=pool,
    )
    return RateLimits(
        policies,
        strategy=settings.rate_limit_strategy,
        shared_storage=storage,
        trusted_proxies=trusted,
        on_close=pool.aclose,
    )


# --- middleware -----------------------------------------------------------------------


def client_identity(client_id: str) -> str:
    """The key of an authenticated client's budgets (IP-keyed ones start with ``ip:``)."""
    return f"client:{client_id}"


def route_class(scope: Scope) -> str | None:
    """The policy name guarding this request, ``token`` for the token endpoint, or
    ``None`` when it is not limited."""
    handler = scope["route_handler"]
    if is_automatic_options(handler):
        return None
    declared = handler.opt.get("rate_limit")
    if declared == NOT_LIMITED:
        return None
    if declared:
        return declared
    return "read" if scope.get("method") in ("GET", "HEAD") else "write"


class RateLimitMiddleware(ASGIMiddleware):
    """Spends the caller's budget for the route's class before the handler runs.

    Register an instance app-wide (``middleware=[..., RateLimitMiddleware()]``) after the
    authentication middleware; the limiter is ``app.state.rate_limits``. Identity is the
    authenticated client (``scope["auth"]``, a ``Caller``), else the client IP."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        policy = route_class(scope)
        if policy is None:
            await next_app(scope, receive, send)
            return

        limits: RateLimits = scope["app"].state.rate_limits
        caller = scope.get("auth")
        if not isinstance(caller, Caller):
            caller = None
        if policy == TOKEN_ENDPOINT:
            decisions = [await limits.hit("token_ip", f"ip:{limits.client_ip(scope)}")]
        else:
            identity = (
                client_identity(caller.client_id) if caller else f"ip:{limits.client_ip(scope)}"
            )
            decisions = [await limits.hit(policy, identity)]
            # A partner route's class is the partner budget itself: spent once, not twice.
            partner_extra = policy != "partner" and caller is not None and caller.partner_id
            if decisions[0].allowed and partner_extra:
                decisions.append(await limits.hit("partner", client_identity(caller.client_id)))
        decision = _tightest(decisions)
        if not decision.allowed:
            # Raised here, outside the handler: the app's exception handling answers it
            # with these headers as they are.
            raise limits.refusal(decision)

        headers = limits.headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    # ``add``: a handler that reported a policy of its own (the token
                    # endpoint) keeps it; both are members of the same list field.
                    response_headers.add(name, value)
            await send(message)

        await next_app(scope, receive, send_with_headers)
