"""What the gateway's edge costs: an authenticated, rate-limited portal read next to the
same handler served without authentication and rate limits, in one run.

Both apps run in this process on the same seeded SQLite database and are called through
the same in-memory ASGI transport (no sockets), so the difference is the edge itself:
bearer-token verification (cached after the first call), scope check, rate-limit
bookkeeping (moving window, in memory; ``--redis`` for the shared Redis store),
correlation ID and security headers. Rounds alternate between the two apps so that
machine noise falls on both alike. It also prints what verifying a token costs with and
without the verified-token cache.

    python bench/gateway.py [--requests 2000] [--concurrency 8] [--rounds 4] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from litestar import Litestar
from litestar.di import Provide

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import access_token, drop_redis_keys, fresh_database  # noqa: E402

from canonical.access import Caller  # noqa: E402
from canonical.time import Period, utcnow  # noqa: E402
from experience_apis.portal.routes import router as portal_router  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.demo import seed  # noqa: E402
from gateway.problems import exception_handlers  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.wiring import build_container  # noqa: E402

PATH = "/experience/portal/v1/customers/cus_acme/invoices"
# High enough never to refuse: the bookkeeping is measured, not the refusals.
READ_LIMIT = "1000000/second"


def bare_app(container) -> Litestar:
    """The portal handler with the same services, without authentication and limits."""
    dependencies = container.dependencies()
    operator = Caller(client_id="bench", subject="bench", scopes=frozenset({"portal:read"}))
    dependencies["caller"] = Provide(lambda: operator, sync_to_thread=False)
    return Litestar(
        route_handlers=[portal_router],
        dependencies=dependencies,
        exception_handlers=exception_handlers,
    )


async def run(app, headers: dict[str, str], requests: int, concurrency: int) -> list[float]:
    """Latencies (s) of ``requests`` GETs from ``concurrency`` concurrent clients."""
    latencies: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        remaining = requests

        async def worker():
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(PATH, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def verification_cost(container, token: str, calls: int = 2000) -> tuple[float, float]:
    """Microseconds per verification: cold (signature and claims checked every time) and
    warm (served from the verified-token cache)."""
    from gateway.auth.tokens import TokenVerifier

    settings = container.settings
    cold = 0.0
    for _ in range(calls // 10):
        fresh = TokenVerifier(
            container.key_source, issuer=settings.oauth_issuer, audience=settings.oauth_audience
        )
        started = time.perf_counter()
        await fresh.verify(token)
        cold += time.perf_counter() - started
    warm_verifier = container.token_verifier
    await warm_verifier.verify(token)
    started = time.perf_counter()
    for _ in range(calls):
        await warm_verifier.verify(token)
    warm = time.perf_counter() - started
    return cold / (calls // 10) * 1e6, warm / calls * 1e6


@dataclasses.dataclass
class Results:
    full_time: float
    bare_time: float
    full_latencies: list[float]
    bare_latencies: list[float]
    cold_us: float
    warm_us: float


async def measure(container, settings: Settings, args) -> Results:
    """Seeds the demo data, bills this month, and times both apps over it."""
    await seed(container)
    await container.billing_runs.run(Period.parse(utcnow().strftime("%Y-%m")), None)
    credentials = await container.clients.create("bench portal", ["portal:read"])

    gateway = create_app(settings, container)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://bench"
    ) as client:
        token = await access_token(client, (credentials.client_id, credentials.client_secret))
    bare = bare_app(container)
    authenticated = {"Authorization": f"Bearer {token}"}

    await run(gateway, authenticated, 200, args.concurrency)  # warm-up
    await run(bare, {}, 200, args.concurrency)
    full_latencies: list[float] = []
    bare_latencies: list[float] = []
    full_time = bare_time = 0.0
    for _ in range(args.rounds):
        started = time.perf_counter()
        full_latencies += await run(gateway, authenticated, args.requests, args.concurrency)
        full_time += time.perf_counter() - started
        started = time.perf_counter()
        bare_latencies += await run(bare, {}, args.requests, args.concurrency)
        bare_time += time.perf_counter() - started
    cold_us, warm_us = await verification_cost(container, token)
    return Results(full_time, bare_time, full_latencies, bare_latencies, cold_us, warm_us)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per app and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--redis", action="store_true", help="rate-limit counters in Redis")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    overrides = {"rate_limit_read": READ_LIMIT, "log_level": "WARNING"}
    if args.redis:
        overrides["redis_url"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        overrides["redis_key_prefix"] = f"meterline-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(Path(tmp)) as url:
            settings = Settings.from_env({}, database_url=url, **overrides)
            container = build_container(settings)
            try:
                r = await measure(container, settings, args)
            finally:
                await container.aclose()
                if args.redis:
                    await drop_redis_keys(overrides["redis_url"], overrides["redis_key_prefix"])

    total = args.requests * args.rounds
    full_rate, bare_rate = total / r.full_time, total / r.bare_time
    store = "Redis" if args.redis else "memory"
    print(
        f"portal invoice list, {total} requests per app, {args.concurrency} concurrent, "
        f"rate-limit store: {store}"
    )
    print(f"{'app':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, rate, latencies in (
        ("gateway (OAuth + scopes + rate limit + edge)", full_rate, r.full_latencies),
        ("same handler, no auth, no limits", bare_rate, r.bare_latencies),
    ):
        print(
            f"{label:<44} {rate:>9,.0f} {statistics.median(latencies) * 1e3:>8.2f} "
            f"{p99(latencies) * 1e3:>8.2f}"
        )
    print(f"ratio gateway / bare handler: {full_rate / bare_rate:.2f}")
    print(
        f"token verification: {r.cold_us:,.0f} µs uncached (RS256 signature + claims), "
        f"{r.warm_us:,.1f} µs cached ({r.cold_us / r.warm_us:,.0f}x less)"
    )


if __name__ == "__main__":
    asyncio.run(main())
