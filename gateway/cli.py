"""The ``meterline`` command: migrate, seed demo data, serve, run billing."""

from __future__ import annotations

import asyncio
import contextlib
import json

import click

from gateway.settings import Settings

__all__ = ["main"]


def _with_container(work):
    """Run ``work(container)`` on a container built from the environment, then close it."""
    from gateway.wiring import build_container
    from process_apis.audit import acting_as

    async def go():
        try:
            container = build_container(Settings.from_env())
        except ValueError as exc:  # settings that cannot work, e.g. the ingest backbone
            raise click.ClickException(str(exc)) from exc
        try:
            with acting_as("cli"):  # audited as done from the command line
                return await work(container)
        finally:
            await container.aclose()

    return asyncio.run(go())


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
@click.option(
    "--credentials-file",
    default="var/demo-clients.json",
    show_default=True,
    help="Where to write the demo clients' credentials (readable by you only).",
)
def seed(credentials_file: str) -> None:
    """Load the demo data (idempotent) and give the demo OAuth clients new secrets."""
    import os
    from pathlib import Path

    import msgspec

    from gateway.demo import seed as seed_demo
    from gateway.demo import seed_clients

    async def work(container):
        return await seed_demo(container), await seed_clients(container)

    summary, credentials = _with_container(work)
    click.echo(f"seeded demo data: {json.dumps(summary)}")
    path = Path(credentials_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(msgspec.json.format(msgspec.json.encode(credentials)))
    click.echo(f"demo OAuth clients (new secrets, also in {path}):")
    for c in credentials:
        partner = f"  partner={c.partner_id}" if c.partner_id else ""
        click.echo(f"  {c.client_id:24} {c.client_secret}  [{' '.join(c.scopes)}]{partner}")


@main.command()
@click.option("--period", required=True, help="Calendar month, YYYY-MM.")
@click.option("--customer", "customers", multiple=True, help="Only these customers.")
def bill(period: str, customers: tuple[str, ...]) -> None:
    """Run billing for a period here, then post its invoices to the ERP (what the ERP
    does not take now stays in the outbox for `meterline worker`)."""
    import msgspec

    from canonical.time import Period

    async def bill_and_post(container):
        run = await container.billing_runs.run(Period.parse(period), list(customers) or None)
        await container.outbox.drain()
        return await container.billing_runs.get(run.id)

    run = _with_container(bill_and_post)
    click.echo(msgspec.json.format(msgspec.json.encode(run)).decode())


async def _sync_payments(container) -> int:
    from canonical.errors import UpstreamError

    try:
        return await container.payments.sync()
    except UpstreamError as exc:
        click.echo(f"payments: ERP unavailable ({exc.detail})", err=True)
        return 0


@main.command()
@click.option(
    "--once", is_flag=True, help="Execute queued runs, drain the outbox (and ingest stream), exit."
)
@click.option(
    "--ingest/--no-ingest",
    default=None,
    help="Store ingested batches from the Redis stream (default: when "
    "METERLINE_INGEST_BACKBONE=redis-streams).",
)
@click.option(
    "--ingest-only",
    is_flag=True,
    help="Only store ingested batches from the Redis stream (a dedicated writer): no outbox.",
)
def worker(once: bool, ingest: bool | None, ingest_only: bool) -> None:
    """Execute queued billing runs (and resume abandoned ones), drain the ERP posting
    outbox and follow the ERP's payments, until stopped (SIGTERM). With the redis-streams
    ingest backbone, also store the batches gateways put on the stream. Run gateways with
    METERLINE_WORKER_IN_PROCESS=false to leave this work to workers; how often idle loops
    look for work is METERLINE_WORKER_INTERVAL_SECONDS."""
    from gateway.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)  # what the loops do, with correlation IDs
    streams = settings.ingest_backbone == "redis-streams"
    if ingest_only:
        ingest = True
    if ingest is None:
        ingest = streams
    if ingest and not streams:
        raise click.ClickException(
            "storing from the ingest stream needs METERLINE_INGEST_BACKBONE=redis-streams "
            "(and REDIS_URL)"
        )

    async def run(container):
        import signal

        from process_apis.audit import acting_as

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):  # finish the work in hand, then exit
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        consumer = container.stream_consumer if ingest else None
        if consumer is not None:
            if once:
                handled = await consumer.drain()
                click.echo(f"ingest: stored {handled} batches from the stream")
            else:
                consumer.start()  # stopped by container.aclose()
                click.echo(f"ingest: writer {consumer.name} consuming the ingest stream")
        if ingest_only:
            await stop.wait()
            return
        runner, outbox = container.billing_runner, container.outbox
        if not once:
            # Both loops run side by side until SIGTERM: runs are billed while their
            # documents are posted. Their logs say what they do.
            runner.kick()
            outbox.kick()
            click.echo(f"worker: billing runs and the ERP outbox ({runner.owner})")
            await stop.wait()
            return
        with acting_as("worker"):
            ran = await runner.run_pending()
            result = await outbox.drain()
            paid = 0 if outbox.breaker_open() else await _sync_payments(container)
        click.echo(
            f"billing runs executed={ran} · outbox: posted={result.posted} "
            f"failed={result.failed} pending={result.pending} · payments applied={paid}"
        )

    _with_container(run)


@main.command()
@click.option("--period", required=True, help="Calendar month, YYYY-MM.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def reconcile(period: str, as_json: bool) -> None:
    """Reconcile a period: events against invoiced quantities, Meterline documents against
    the ERP's, ERP journals; each variance is raised as an exception. Exit status 1 when
    there are variances."""
    import msgspec

    from canonical.time import Period

    try:
        month = Period.parse(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from exc
    report = _with_container(lambda container: container.reconciliation.reconcile(month))
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        s = report.summary
        click.echo(
            f"{report.period}: {report.status}: {s.quantities} customer/meter rows, "
            f"{s.documents} documents ({s.reconciled_documents} reconciled, "
            f"{s.pending_documents} pending, {s.failed_documents} failed), "
            f"{s.uninvoiced_subscriptions} subscriptions not invoiced yet"
        )
        if report.variances:
            width = max(len(v.subject) for v in report.variances)
            click.echo(f"{'KIND':19}  {'SUBJECT':{width}}  DETAIL")
            for v in report.variances:
                click.echo(f"{v.kind:19}  {v.subject:{width}}  {v.detail}")
    if report.variances:
        raise SystemExit(1)


@main.group()
def audit() -> None:
    """The hash-chained audit log of state changes."""


@audit.command("verify")
@click.option("--page-size", default=1000, show_default=True, help="Entries read per query.")
def audit_verify(page_size: int) -> None:
    """Recompute the audit log's hash chain: OK with the entry count, or the first broken
    entry (exit status 1)."""
    from tqdm import tqdm

    # On stderr, and only on a terminal.
    with tqdm(unit=" entries", desc="verifying", leave=False, disable=None) as bar:

        def progress(checked: int) -> None:
            bar.update(checked - bar.n)

        result = _with_container(
            lambda container: container.audit.verify(page_size=page_size, progress=progress)
        )
    if result.ok:
        click.echo(f"OK: {result.entries} entries, head {result.head_seq} {result.head_hash}")
        return
    problem = result.problem
    raise click.ClickException(
        f"audit log broken at entry {problem.seq} ({problem.kind}): {problem.detail} "
        f"({result.entries} entries verified before it)"
    )


def _print_credentials(credentials, as_json: bool) -> None:
    import msgspec

    if as_json:
        click.echo(msgspec.json.encode(credentials).decode())
        return
    click.echo(f"client_id:     {credentials.client_id}")
    click.echo(f"client_secret: {credentials.client_secret}")
    click.echo(f"scopes:        {' '.join(credentials.scopes)}")
    if credentials.partner_id:
        click.echo(f"partner:       {credentials.partner_id}")
    click.echo("The secret is shown only now; store it in your secret manager.", err=True)


@main.group()
def clients() -> None:
    """OAuth clients: register, list, disable, new secret."""


@clients.command("create")
@click.option("--name", required=True, help="Who the client is (shown in listings).")
@click.option("--scopes", required=True, help='Space-separated, e.g. "usage:write".')
@click.option("--partner", default=None, help="Confine the client to this partner's customers.")
@click.option("--client-id", default=None, help="Choose the client_id (default: generated).")
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON.")
def clients_create(
    name: str, scopes: str, partner: str | None, client_id: str | None, as_json: bool
) -> None:
    """Register a client and print its secret (once)."""
    from canonical.errors import MeterlineError

    async def work(container):
        return await container.clients.create(
            name, scopes.split(), partner_id=partner, client_id=client_id
        )

    try:
        credentials = _with_container(work)
    except MeterlineError as exc:
        raise click.ClickException(exc.detail) from exc
    _print_credentials(credentials, as_json)


@clients.command("list")
def clients_list() -> None:
    """List registered clients (never their secrets)."""
    for c in _with_container(lambda container: container.clients.list()):
        state = "active" if c.active else "disabled"
        partner = f" partner={c.partner_id}" if c.partner_id else ""
        click.echo(f"{c.client_id}  {state:8}  {c.name!r}  [{' '.join(c.scopes)}]{partner}")


@clients.command("disable")
@click.argument("client_id")
def clients_disable(client_id: str) -> None:
    """Stop issuing tokens to a client (tokens already issued expire on their own)."""
    _with_container(lambda container: container.clients.set_active(client_id, False))
    click.echo(f"disabled {client_id}")


@clients.command("reset-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON.")
def clients_reset_secret(client_id: str, as_json: bool) -> None:
    """Replace a client's secret and print the new one (once)."""
    _print_credentials(
        _with_container(lambda container: container.clients.reset_secret(client_id)), as_json
    )


@main.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Sign new tokens with a new key; the old key stays published until its tokens expire."""
    kid = _with_container(lambda container: container.keyring.rotate())
    click.echo(f"signing with {kid}")


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
