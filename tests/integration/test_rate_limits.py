"""Rate limits at the edge: budgets per client and route class, IETF RateLimit headers,
429 problems, both strategies, memory and Redis storage, and failing open onto a local
limiter when Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from litestar import Litestar, Request, Response, Router, get, post
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from canonical.access import Caller
from canonical.errors import NotFound
from gateway import rate_limit as rate_limit_module
from gateway.errors import RateLimited
from gateway.problems import exception_handlers
from gateway.rate_limit import (
    Decision,
    RateLimitMiddleware,
    RateLimits,
    build_rate_limits,
)
from gateway.settings import Settings
from tests.support.clock import Clock
from tests.support.problems import assert_problem

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


class FakeAuth(ASGIMiddleware):
    """Stands in for the OAuth middleware: ``X-Test-Client`` (and ``X-Test-Partner``)
    become ``scope["auth"]``; no header means an anonymous caller."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope, receive, send, next_app) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if client := headers.get("x-test-client"):
            scope["auth"] = Caller(
                client_id=client,
                subject=client,
                scopes=frozenset(),
                partner_id=headers.get("x-test-partner") or None,
            )
        await next_app(scope, receive, send)


@get("/items")
async def list_items() -> dict:
    return {"items": []}


@post("/items", status_code=201)
async def create_item() -> dict:
    return {"id": "x"}


@post("/events", status_code=202)
async def ingest() -> dict:
    return {"accepted": 1}


# The route class may be set on a router for all its handlers.
bulk = Router(path="/bulk", route_handlers=[ingest], opt={"rate_limit": "ingest"})


@get("/missing")
async def missing() -> dict:
    raise NotFound("no such thing")


@get("/health", opt={"rate_limit": "none"})
async def health() -> dict:
    return {"status": "ok"}


@post("/token", opt={"rate_limit": "token"}, status_code=200)
async def token(request: Request) -> Response:
    client = request.headers.get("x-token-client", "anonymous")
    headers = await request.app.state.rate_limits.check("token_client", f"client:{client}")
    return Response({"access_token": "t"}, headers=headers)


def build_app(settings: Settings) -> Litestar:
    app = Litestar(
        route_handlers=[list_items, create_item, bulk, missing, health, token],
        middleware=[FakeAuth(), RateLimitMiddleware()],
        exception_handlers=exception_handlers,
    )
    app.state.rate_limits = build_rate_limits(settings)
    return app


@contextlib.asynccontextmanager
async def gateway(**overrides):
    app = build_app(Settings.from_env({}, **overrides))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await app.state.rate_limits.aclose()


def as_client(client_id: str, partner: str | None = None) -> dict[str, str]:
    headers = {"X-Test-Client": client_id}
    if partner:
        headers["X-Test-Partner"] = partner
    return headers


RATELIMIT = re.compile(r'^"(?P<policy>\w+)";r=(?P<r>\d+);t=(?P<t>\d+)$')
POLICY = re.compile(r'^"(?P<policy>\w+)";q=(?P<q>\d+);w=(?P<w>\d+)$')


def ratelimit(response: httpx.Response) -> tuple[str, int, int]:
    match = RATELIMIT.match(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return match["policy"], int(match["r"]), int(match["t"])


def policy(response: httpx.Response) -> tuple[str, int, int]:
    match = POLICY.match(response.headers["RateLimit-Policy"])
    assert match, response.headers["RateLimit-Policy"]
    return match["policy"], int(match["q"]), int(match["w"])


def assert_rate_limited(response: httpx.Response) -> dict:
    body = assert_problem(response, 429, "rate_limited")
    assert body["status"] == 429
    assert body["type"].endswith("/problems/rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert ratelimit(response)[1] == 0
    return body


async def spend(client: httpx.AsyncClient, n: int, method="GET", path="/items", **kw):
    return [await client.request(method, path, **kw) for _ in range(n)]


# --- headers and refusals ------------------------------------------------------------


async def test_headers_on_every_response_and_remaining_decreases():
    async with gateway(rate_limit_read="5/minute") as client:
        responses = await spend(client, 3, headers=as_client("a"))
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all(policy(r) == ("read", 5, 60) for r in responses)
        assert [ratelimit(r)[1] for r in responses] == [4, 3, 2]
        assert all(1 <= ratelimit(r)[2] <= 60 for r in responses)
        # Errors from the handler carry them too.
        missing = await client.get("/missing", headers=as_client("a"))
        assert missing.status_code == 404
        assert ratelimit(missing)[:2] == ("read", 1)


async def test_exhausted_budget_is_a_429_problem_with_retry_after():
    async with gateway(rate_limit_write="2/minute") as client:
        ok = await spend(client, 2, "POST", headers=as_client("a"))
        assert [r.status_code for r in ok] == [201, 201]
        refused = await client.post("/items", headers=as_client("a"))
        body = assert_rate_limited(refused)
        assert "write" in body["detail"]
        assert policy(refused) == ("write", 2, 60)
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert ratelimit(refused)[2] == int(refused.headers["Retry-After"])


async def test_budgets_are_per_client():
    async with gateway(rate_limit_read="3/minute") as client:
        await spend(client, 3, headers=as_client("a"))
        assert_rate_limited(await client.get("/items", headers=as_client("a")))
        other = await client.get("/items", headers=as_client("b"))
        assert other.status_code == 200 and ratelimit(other)[1] == 2
        # Anonymous callers are counted by IP, apart from any client.
        anonymous = await client.get("/items")
        assert anonymous.status_code == 200 and ratelimit(anonymous)[1] == 2


async def test_route_classes_have_independent_budgets():
    async with gateway(
        rate_limit_read="2/minute", rate_limit_write="2/minute", rate_limit_ingest="2/minute"
    ) as client:
        await spend(client, 2, headers=as_client("a"))
        assert_rate_limited(await client.get("/items", headers=as_client("a")))
        write = await client.post("/items", headers=as_client("a"))
        assert write.status_code == 201 and policy(write)[0] == "write"
        events = await client.post("/bulk/events", headers=as_client("a"))
        assert events.status_code == 202 and policy(events)[0] == "ingest"
        assert ratelimit(events)[1] == 1


async def test_budget_comes_back_after_the_window():
    async with gateway(rate_limit_read="2/second") as client:
        await spend(client, 2, headers=as_client("a"))
        assert_rate_limited(await client.get("/items", headers=as_client("a")))
        await asyncio.sleep(1.05)
        assert (await client.get("/items", headers=as_client("a"))).status_code == 200


async def test_sliding_window_counter_strategy():
    async with gateway(
        rate_limit_strategy="sliding-window-counter", rate_limit_read="3/minute"
    ) as client:
        responses = await spend(client, 4, headers=as_client("a"))
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert [ratelimit(r)[1] for r in responses] == [2, 1, 0, 0]
        assert_rate_limited(responses[-1])
        assert (await client.get("/items", headers=as_client("b"))).status_code == 200


async def test_multi_item_policy_reports_the_most_restrictive_item():
    async with gateway(rate_limit_read="2/second;3/minute") as client:
        first = await client.get("/items", headers=as_client("a"))
        assert policy(first) == ("read", 2, 1) and ratelimit(first)[1] == 1
        await client.get("/items", headers=as_client("a"))
        burst = await client.get("/items", headers=as_client("a"))
        assert_rate_limited(burst)
        assert policy(burst) == ("read", 2, 1)
        await asyncio.sleep(1.05)
        # The second is free again; the minute has one request left, now the tighter.
        third = await client.get("/items", headers=as_client("a"))
        assert third.status_code == 200
        assert policy(third) == ("read", 3, 60) and ratelimit(third)[1] == 0
        refused = await client.get("/items", headers=as_client("a"))
        assert_rate_limited(refused)
        assert policy(refused) == ("read", 3, 60)
        assert int(refused.headers["Retry-After"]) > 50


async def test_partner_policy_applies_on_top_of_the_route_class():
    async with gateway(rate_limit_read="10/minute", rate_limit_partner="2/minute") as client:
        partner = as_client("p1", partner="ptn_1")
        first = await client.get("/items", headers=partner)
        # The tighter of the two budgets is the one described.
        assert policy(first) == ("partner", 2, 60) and ratelimit(first)[1] == 1
        # The partner budget covers every route class.
        assert (await client.post("/items", headers=partner)).status_code == 201
        refused = await client.get("/items", headers=partner)
        assert_rate_limited(refused)
        assert policy(refused)[0] == "partner"
        # A client without a partner only has the route-class budget.
        plain = await client.get("/items", headers=as_client("c1"))
        assert plain.status_code == 200 and policy(plain) == ("read", 10, 60)


async def test_unlimited_routes_and_automatic_options():
    async with gateway(rate_limit_read="1/minute", rate_limit_write="1/minute") as client:
        for _ in range(5):
            response = await client.get("/health")
            assert response.status_code == 200
            assert "RateLimit" not in response.headers
            options = await client.options("/items")
            assert options.status_code == 204
            assert "RateLimit" not in options.headers


async def test_token_endpoint_is_limited_per_ip_then_per_client():
    async with gateway(rate_limit_token_ip="3/minute", rate_limit_token_client="2/minute") as c:
        first = await c.post("/token", headers={"X-Token-Client": "cli_1"})
        assert first.status_code == 200
        # Both policies are reported, as members of the same list fields.
        assert '"token_ip";q=3;w=60' in first.headers["RateLimit-Policy"]
        assert '"token_client";q=2;w=60' in first.headers["RateLimit-Policy"]
        assert (await c.post("/token", headers={"X-Token-Client": "cli_1"})).status_code == 200
        by_client = await c.post("/token", headers={"X-Token-Client": "cli_1"})
        assert_rate_limited_multi(by_client)
        # The IP budget is spent by now as well (three attempts from 127.0.0.1).
        by_ip = await c.post("/token", headers={"X-Token-Client": "cli_2"})
        assert_rate_limited(by_ip)
        assert policy(by_ip)[0] == "token_ip"


def assert_rate_limited_multi(response: httpx.Response) -> None:
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert '"token_client";r=0;' in response.headers["RateLimit"]


async def test_forwarded_for_counts_only_from_trusted_proxies():
    spoofed = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(3)]
    # Untrusted peer: every forged address lands in the peer's one bucket.
    async with gateway(rate_limit_read="2/minute") as client:
        statuses = [(await client.get("/items", headers=h)).status_code for h in spoofed]
        assert statuses == [200, 200, 429]
    # The test transport's peer (127.0.0.1) as trusted proxy: one bucket per client.
    async with gateway(rate_limit_read="2/minute", trusted_proxies="127.0.0.1") as client:
        statuses = [(await client.get("/items", headers=h)).status_code for h in spoofed]
        assert statuses == [200, 200, 200]


async def test_settings_are_validated():
    with pytest.raises(ValueError, match="rate_limit_read"):
        build_rate_limits(Settings.from_env({}, rate_limit_read="lots"))
    with pytest.raises(ValueError, match="rate_limit_strategy"):
        build_rate_limits(Settings.from_env({}, rate_limit_strategy="fixed-window"))
    with pytest.raises(ValueError, match="trusted_proxies"):
        build_rate_limits(Settings.from_env({}, trusted_proxies="proxy.internal"))
    limits = build_rate_limits(Settings.from_env({}))
    with pytest.raises(ValueError, match="unknown rate-limit policy"):
        await limits.hit("reads", "client:a")
    await limits.aclose()


async def test_policies_and_identities_do_not_collide():
    limits = build_rate_limits(
        Settings.from_env({}, rate_limit_read="1/minute", rate_limit_write="1/minute")
    )
    try:
        assert (await limits.hit("read", "client:a")).allowed
        assert (await limits.hit("write", "client:a")).allowed
        # "/" in an identity cannot reach into the key parts after it.
        assert (await limits.hit("read", "client:a/1/1/minute")).allowed
        assert not (await limits.hit("read", "client:a")).allowed
    finally:
        await limits.aclose()


async def test_check_raises_with_headers_and_returns_them_otherwise():
    limits = build_rate_limits(Settings.from_env({}, rate_limit_token_client="1/minute"))
    try:
        headers = await limits.check("token_client", "client:a")
        assert set(headers) == {"RateLimit-Policy", "RateLimit"}
        assert headers["RateLimit-Policy"] == '"token_client";q=1;w=60'
        # The one request of the budget is spent: none remains, for up to a minute.
        remaining = RATELIMIT.match(headers["RateLimit"])
        assert remaining, headers["RateLimit"]
        assert remaining["policy"] == "token_client" and remaining["r"] == "0"
        assert 1 <= int(remaining["t"]) <= 60
        with pytest.raises(RateLimited) as refused:
            await limits.check("token_client", "client:a")
        assert refused.value.headers["Retry-After"].isdigit()
        assert refused.value.headers["RateLimit"].startswith('"token_client";r=0;t=')
    finally:
        await limits.aclose()


# --- Redis -----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
async def test_redis_budget_is_shared_between_instances(redis_url, strategy):
    url, prefix = redis_url
    settings = dict(
        redis_url=url,
        redis_key_prefix=prefix,
        rate_limit_read="4/minute",
        rate_limit_strategy=strategy,
    )
    async with gateway(**settings) as one, gateway(**settings) as two:
        statuses = []
        for i in range(6):
            client = one if i % 2 == 0 else two
            statuses.append((await client.get("/items", headers=as_client("a"))).status_code)
        assert statuses == [200, 200, 200, 200, 429, 429]
    import redis.asyncio as aioredis

    redis = aioredis.from_url(url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:ratelimit:*")]
        assert keys, "the counters live in Redis under the configured prefix"
    finally:
        await redis.aclose()


async def test_memory_budgets_are_per_instance():
    async with (
        gateway(rate_limit_read="2/minute") as one,
        gateway(rate_limit_read="2/minute") as two,
    ):
        statuses = [
            (await c.get("/items", headers=as_client("a"))).status_code for c in (one, two) * 3
        ]
        assert statuses.count(200) == 4


async def test_unreachable_redis_fails_open_onto_a_local_limiter(limiter_log):
    async with gateway(redis_url=UNREACHABLE_REDIS, rate_limit_read="3/minute") as client:
        started = time.perf_counter()
        responses = await spend(client, 5, headers=as_client("a"))
        elapsed = time.perf_counter() - started
        assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
        assert_rate_limited(responses[-1])
        assert [ratelimit(r)[1] for r in responses[:3]] == [2, 1, 0]
        assert elapsed < 1.0, f"{elapsed:.2f} s for 5 requests"
        # Other clients keep their own local budget.
        assert (await client.get("/items", headers=as_client("b"))).status_code == 200
    assert sum("unreachable" in m for m in limiter_log) == 1


async def test_silent_redis_costs_one_timeout_not_one_per_request(limiter_log):
    # Accepts connections and never answers: the worst kind of outage.
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway(
            redis_url=f"redis://127.0.0.1:{port}/0", rate_limit_read="3/minute"
        ) as client:
            started = time.perf_counter()
            first = await client.get("/items", headers=as_client("a"))
            first_took = time.perf_counter() - started
            assert first.status_code == 200
            assert first_took < 2.0, f"first request took {first_took:.2f} s"
            assert connections == 1
            started = time.perf_counter()
            rest = await spend(client, 4, headers=as_client("a"))
            assert time.perf_counter() - started < 0.5
            assert [r.status_code for r in rest] == [200, 200, 429, 429]
            # The proof that does not depend on the machine's speed: no request after the
            # first went near the silent server.
            assert connections == 1
    finally:
        server.close()
        await server.wait_closed()
    assert sum("unreachable" in m for m in limiter_log) == 1


@pytest.fixture
def limiter_log():
    """The limiter's log messages (Litestar reconfigures the root logger, so caplog's
    handler does not survive building an app)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("meterline.rate_limit")
    handler = Collect(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


class FlakyStorage(MemoryStorage):
    """A shared storage that can be switched off, counting the calls it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def acquire_entry(self, key, limit, expiry, amount=1):
        self.calls += 1
        if self.down:
            raise ConnectionError("storage is down")
        return await super().acquire_entry(key, limit, expiry, amount)


async def test_outage_backs_off_then_returns_to_the_shared_storage(limiter_log, monkeypatch):
    clock = Clock()  # the back-off's; wall time stays real (the windows use it)
    monkeypatch.setattr(rate_limit_module, "time", clock)
    shared = FlakyStorage()
    limits = RateLimits(
        {"read": build_rate_limits(Settings.from_env({})).policies["read"]},
        shared_storage=shared,
        retry_seconds=0.2,
    )
    try:
        assert (await limits.hit("read", "a")).allowed
        shared.down = True
        decisions = [await limits.hit("read", "a") for _ in range(5)]
        assert all(isinstance(d, Decision) and d.allowed for d in decisions)
        # One failed attempt, then the local limiter without asking the storage again.
        assert shared.calls == 2
        clock.now += 0.25  # past the back-off: one probe, which fails
        await limits.hit("read", "a")
        assert shared.calls == 3
        shared.down = False
        clock.now += 0.25  # past the next back-off: the probe succeeds
        assert (await limits.hit("read", "a")).allowed
        assert shared.calls == 4
        # Back on the shared storage: it counts again.
        assert (await limits.hit("read", "a")).remaining == 200 - 3
    finally:
        await limits.aclose()
    assert sum("unreachable" in m for m in limiter_log) == 1
    assert sum("reachable again" in m for m in limiter_log) == 1
