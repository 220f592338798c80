"""Portal reads under concurrent load: the invoice list and the invoice detail of the
customer portal API, served with the view cache and without it, in one run.

Two real gateways (uvicorn processes, every request with a verified OAuth token, a
rate-limit count, correlation ID and security headers) run on the same database: one
as configured by default (views cached in process memory; with ``--redis`` also in
Redis), one with the cache off (``METERLINE_EXPERIENCE_CACHE_BYTES=0``: every read
computes its view). Both check tenancy and read the version stamps on every request;
only the cached one keeps views. A third series sends the cached gateway conditional
GETs with the ETag the client holds (answered 304, no body).

The data: the demo world (four customers) billed for every month since January 2026
and posted, so each customer has a dozen invoices of three to five lines. The list is
a customer's first page of 20; the detail an invoice with its lines, tax, memos and
payments; the requests go round the customers and invoices. Rounds alternate between
the gateways so that machine noise falls on both alike; the ratios are of this run.

    python bench/experience.py [--requests 1000] [--concurrency 16] [--rounds 3]
                               [--postgres] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import access_token, drop_redis_keys, fresh_database, gateway_process  # noqa: E402

from canonical.time import Period, utcnow  # noqa: E402
from gateway.demo import seed  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.wiring import build_container  # noqa: E402

PORTAL = "/experience/portal/v1"
FIRST_PERIOD = Period(2026, 1)  # the demo subscriptions start on 2026-01-01
# High enough never to refuse: the reads are measured, not the limits.
READ_LIMIT = "1000000/second"


async def prepare(url: str) -> tuple[tuple[str, str], list[str], list[str]]:
    """Seeds and bills the world; returns portal credentials, the customers and the
    invoices."""
    settings = Settings.from_env(
        {}, database_url=url, worker_in_process=False, erp_quota_per_second=10_000
    )
    container = build_container(settings)
    try:
        await seed(container)
        period, last = FIRST_PERIOD, Period.containing(utcnow())
        while (period.year, period.month) <= (last.year, last.month):
            await container.billing_runs.run(period, None)
            period = Period.containing(period.end)
        await container.outbox.drain()
        invoices, after = [], None
        while True:
            page, more = await container.invoices.list(limit=100, starting_after=after)
            invoices += [i.id for i in page]
            if not more:
                break
            after = page[-1].id
        customers = sorted({i.customer_id for i in (await container.invoices.many(invoices))})
        credentials = await container.clients.create("bench portal", ["portal:read"])
    finally:
        await container.aclose()
    return (credentials.client_id, credentials.client_secret), customers, invoices


async def load(
    http: httpx.AsyncClient,
    paths: list[str],
    headers: dict[str, str],
    requests: int,
    concurrency: int,
    etags: dict[str, str] | None = None,
) -> tuple[float, list[float]]:
    """Wall time and latencies (s) of ``requests`` GETs going round ``paths`` from
    ``concurrency`` concurrent clients; with ``etags``, conditional (expecting 304)."""
    rotation = itertools.cycle(paths)
    remaining = requests
    latencies: list[float] = []
    expected = 304 if etags else 200

    async def client():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            path = next(rotation)
            sent = {**headers, "If-None-Match": etags[path]} if etags else headers
            started = time.perf_counter()
            response = await http.get(path, headers=sent)
            latencies.append(time.perf_counter() - started)
            if response.status_code != expected:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


@dataclasses.dataclass
class Series:
    seconds: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)

    def add(self, measured: tuple[float, list[float]]) -> None:
        self.seconds += measured[0]
        self.latencies += measured[1]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1e3


async def measure(url: str, args, cached_env: dict[str, str]) -> dict[str, dict[str, Series]]:
    credentials, customers, invoices = await prepare(url)
    endpoints = {
        "invoice list": [f"{PORTAL}/customers/{c}/invoices?limit=20" for c in customers],
        "invoice detail": [f"{PORTAL}/invoices/{i}" for i in invoices],
    }
    common = {"METERLINE_RATE_LIMIT_READ": READ_LIMIT, "METERLINE_WORKER_IN_PROCESS": "false"}
    results = {
        name: {m: Series() for m in ("uncached", "cached", "cached, 304")} for name in endpoints
    }
    async with (
        gateway_process(url, **common, **cached_env) as (cached, _),
        gateway_process(url, **common, METERLINE_EXPERIENCE_CACHE_BYTES="0") as (plain, _),
    ):
        headers = {}
        for http in (cached, plain):
            token = await access_token(http, credentials)
            headers[http] = {"Authorization": f"Bearer {token}"}
        for name, paths in endpoints.items():
            etags = {}
            for path in paths:  # warm-up: fills the cache, and the client's ETags
                response = await cached.get(path, headers=headers[cached])
                etags[path] = response.headers["etag"]
            await load(plain, paths, headers[plain], 100, args.concurrency)
            await load(cached, paths, headers[cached], 100, args.concurrency)
            series = results[name]
            for _ in range(args.rounds):
                n, c = args.requests, args.concurrency
                series["uncached"].add(await load(plain, paths, headers[plain], n, c))
                series["cached"].add(await load(cached, paths, headers[cached], n, c))
                series["cached, 304"].add(
                    await load(cached, paths, headers[cached], n, c, etags=etags)
                )
    print(f"{len(customers)} customers, {len(invoices)} invoices")
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per series and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--redis", action="store_true", help="cached views in Redis too")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    cached_env: dict[str, str] = {}
    redis = None
    if args.redis:
        redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        prefix = f"meterline-bench-{uuid.uuid4().hex[:8]}"
        cached_env = {"REDIS_URL": redis, "METERLINE_REDIS_KEY_PREFIX": prefix}
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(Path(tmp), postgres=args.postgres) as url:
            try:
                results = await measure(url, args, cached_env)
            finally:
                if redis:
                    await drop_redis_keys(redis, cached_env["METERLINE_REDIS_KEY_PREFIX"])

    backend = "PostgreSQL" if args.postgres else "SQLite"
    store = "memory + Redis" if args.redis else "memory"
    total = args.requests * args.rounds
    print(
        f"portal reads on {backend}, {total} requests per series, {args.concurrency} "
        f"concurrent clients, cache: {store}"
    )
    print(f"{'endpoint':<16} {'series':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, series in results.items():
        for label, s in series.items():
            print(f"{name:<16} {label:<12} {s.rate:>8,.0f} {s.p(50):>8.2f} {s.p(99):>8.2f}")
        plain, cached, conditional = series["uncached"], series["cached"], series["cached, 304"]
        print(
            f"{name}: cached / uncached throughput {cached.rate / plain.rate:.2f}x, "
            f"p99 {cached.p(99) / plain.p(99):.2f}x; with If-None-Match (304) "
            f"{conditional.rate / plain.rate:.2f}x, p99 {conditional.p(99) / plain.p(99):.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
