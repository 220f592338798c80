"""A large backlog through the gateway: resident memory and throughput as the event
store grows (10 million events by default).

Batches are made as they are sent (the client never holds the backlog), by several
concurrent clients, with time-ordered ids and event time moving forward. Every
``--report`` events it prints the gateway process's resident memory (VmRSS) and the
throughput of that stretch, so flat memory and steady dedupe cost are visible as the
store grows; at the end the first and last stretches are compared.

    python bench/backlog.py [--events 10000000] [--report 1000000] [--clients 8] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import access_token, fresh_database, gateway_process, rss_bytes  # noqa: E402
from ingest import seed_customers  # noqa: E402

from canonical.time import utcnow  # noqa: E402

BATCH = 1000
MB = 1024 * 1024


class Backlog:
    """Batch bodies made on demand: event n has a time-ordered id and a timestamp that
    moves forward through the last hour."""

    def __init__(self, events: int) -> None:
        self.total = events
        self.next = 0
        self.start = utcnow() - timedelta(hours=1)
        self.step = timedelta(hours=1) / events
        self.run = f"{time.time_ns():x}"

    def take(self) -> bytes | None:
        if self.next >= self.total:
            return None
        first, self.next = self.next, min(self.next + BATCH, self.total)
        return msgspec.json.encode(
            [
                {
                    "id": f"{self.run}-{n:012d}",
                    "source": "backlog",
                    "event_type": "api.request",
                    "customer_id": f"cus_{n % 50}",
                    "timestamp": self.start + n * self.step,
                    "properties": {"path": "/v1/query", "ms": n % 300},
                }
                for n in range(first, self.next)
            ]
        )


async def run(url: str, args) -> list[tuple[int, float, int]]:
    """Rows of (events so far, events/s of the stretch, gateway RSS)."""
    credentials = await seed_customers(url)
    backlog = Backlog(args.events)
    rows: list[tuple[int, float, int]] = []
    async with gateway_process(url) as (http, server):
        token = await access_token(http, credentials)
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        done = 0
        mark, mark_done = time.perf_counter(), 0
        rows.append((0, 0.0, rss_bytes(server.pid)))

        async def client() -> None:
            nonlocal done, mark, mark_done
            while (body := backlog.take()) is not None:
                response = await http.post(
                    "/process/usage/v1/events", content=body, headers=headers
                )
                response.raise_for_status()
                done += response.json()["accepted"]
                if done - mark_done >= args.report:
                    now = time.perf_counter()
                    rows.append((done, (done - mark_done) / (now - mark), rss_bytes(server.pid)))
                    print(
                        f"{done:>12,} {rows[-1][1]:>12,.0f} {rows[-1][2] / MB:>10,.0f}",
                        flush=True,
                    )
                    mark, mark_done = now, done

        await asyncio.gather(*(client() for _ in range(args.clients)))
        if done != args.events:
            raise RuntimeError(f"{done} events accepted of {args.events}")
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--report", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"{args.events:,} events in batches of {BATCH}, {args.clients} clients, {backend}")
    print(f"{'events stored':>12} {'events/s':>12} {'RSS MiB':>10}")
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").is_dir() else None) as tmp:
        async with fresh_database(Path(tmp), postgres=args.postgres) as url:
            rows = await run(url, args)
    stretches = rows[1:]
    first, last = stretches[0], stretches[-1]
    peak = max(rss for _, _, rss in stretches)
    print(
        f"RSS after the first stretch {first[2] / MB:,.0f} MiB, at the end {last[2] / MB:,.0f} "
        f"MiB, peak {peak / MB:,.0f} MiB; throughput of the last stretch / the first: "
        f"{last[1] / first[1]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
