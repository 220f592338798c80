"""The ``meterline`` command: migrate, seed demo data, serve, run billing."""

from __future__ import annotations

import asyncio
import json

import click

from gateway.settings import Settings

__all__ = ["main"]


@click.group()
def main() -> None:
    """Meterline: usage in, invoices and ERP postings out."""


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) to DATABASE_URL."""
    from gateway.migrate import upgrade

    settings = Settings.from_env()
    asyncio.run(upgrade(settings.database_url))
    click.echo(f"migrated {settings.database_url}")


@main.command()
def seed() -> None:
    """Load the demo data (idempotent)."""
    from gateway.demo import seed as seed_demo
    from gateway.wiring import build_container

    async def go():
        container = build_container(Settings.from_env())
        try:
            return await seed_demo(container)
        finally:
            await container.aclose()

    click.echo(f"seeded demo data: {json.dumps(asyncio.run(go()))}")


@main.command()
@click.option("--period", required=True, help="Calendar month, YYYY-MM.")
@click.option("--customer", "customers", multiple=True, help="Only these customers.")
def bill(period: str, customers: tuple[str, ...]) -> None:
    """Run billing for a period and post the invoices to the ERP."""
    import msgspec

    from canonical.time import Period
    from gateway.wiring import build_container

    async def go():
        container = build_container(Settings.from_env())
        try:
            return await container.billing_runs.run(Period.parse(period), list(customers) or None)
        finally:
            await container.aclose()

    click.echo(msgspec.json.format(msgspec.json.encode(asyncio.run(go()))).decode())


@main.command()
@click.option("--interval", default=5.0, show_default=True, help="Seconds between drains.")
@click.option("--once", is_flag=True, help="Drain the outbox once and exit.")
def worker(interval: float, once: bool) -> None:
    """Drain the ERP posting outbox: post pending invoices, again and again."""
    from gateway.wiring import build_container

    async def go():
        container = build_container(Settings.from_env())
        try:
            while True:
                result = await container.posting.post_pending()
                if result.posted or result.failed or result.pending:
                    click.echo(
                        f"outbox: posted={result.posted} failed={result.failed} "
                        f"pending={result.pending}"
                    )
                if once:
                    return
                await asyncio.sleep(interval)
        finally:
            await container.aclose()

    asyncio.run(go())


@main.command()
@click.option("--host", default=None, help="Bind address (default from settings: 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the gateway with uvicorn."""
    import uvicorn

    settings = Settings.from_env()
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
