"""Conditional GETs and the view cache of the portal: a repeated read is served from the
cache (and a conditional one answers 304), and the very next read after a document
changes (posted, paid, voided, billed by another process) or new usage arrives shows the
change, with a new ETag, whichever process made it and whichever process or Redis holds
the cached view."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from canonical.time import Period, utcnow
from process_apis.tables import usage_events
from process_apis.versions import DataVersions
from tests.support.portal import (
    DEC,
    JAN,
    JANUARY_USAGE,
    PLAN,
    PORTAL,
    event,
    pay,
    portal_client,
    send,
    void,
)
from tests.support.seeding import moments, seed

D = Decimal


async def read(client, path: str, etag: str | None = None, **params):
    headers = {"If-None-Match": etag} if etag else {}
    return await client.get(PORTAL + path, params=params, headers=headers)


async def test_documents_cached_until_posted_paid_or_voided(database_url):
    async with portal_client(database_url) as client:
        c = client.container
        stats = c.view_cache.stats
        await seed(c, PLAN)
        await send(client, JANUARY_USAGE)
        await c.billing_runs.run(JAN)  # finalized; the outbox is not drained yet
        page, _ = await c.invoices.list(customer_id="cus_de")
        [invoice] = page
        path = f"/invoices/{invoice.id}"

        first = await read(client, path)
        assert first.status_code == 200 and first.json()["status"] == "finalized"
        etag = first.headers["etag"]
        hits = stats.hits
        again = await read(client, path)
        assert (again.headers["etag"], again.content) == (etag, first.content)
        assert stats.hits == hits + 1  # served from the cache
        unchanged = await read(client, path, etag)
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert unchanged.headers["etag"] == etag
        assert (await read(client, path, f'W/"x", {etag}')).status_code == 304
        assert (await read(client, path, "*")).status_code == 304
        listing = await read(client, "/customers/cus_de/invoices")
        summary = await read(client, "/customers/cus_de")

        await c.outbox.drain()  # posted
        posted = await read(client, path, etag)
        assert posted.status_code == 200 and posted.json()["status"] == "posted"
        assert posted.headers["etag"] != etag
        relisted = await read(client, "/customers/cus_de/invoices", listing.headers["etag"])
        assert relisted.status_code == 200
        assert [i["status"] for i in relisted.json()["data"]] == ["posted"]

        await pay(c, invoice, "58.53", "bank-1")
        await c.payments.sync()
        paid = await read(client, path, posted.headers["etag"])
        assert paid.status_code == 200 and paid.json()["status"] == "paid"
        assert [D(p["amount"]) for p in paid.json()["payments"]] == [D("58.53")]
        resummed = await read(client, "/customers/cus_de", summary.headers["etag"])
        assert resummed.status_code == 200
        assert D(resummed.json()["balances"][0]["balance"]) == 0

        page, _ = await c.invoices.list(customer_id="cus_fr")
        [fr] = page
        before = await read(client, f"/invoices/{fr.id}")
        assert before.json()["status"] == "posted"
        memo = (await void(client, fr.id, "void-cache"))["credit_memo"]
        voided = await read(client, f"/invoices/{fr.id}", before.headers["etag"])
        assert voided.status_code == 200 and voided.json()["status"] == "void"
        assert [m["id"] for m in voided.json()["memos"]] == [memo["id"]]
        # The first ETag names a representation that is gone: the current one is sent.
        assert (await read(client, path, etag)).status_code == 200


async def test_new_usage_changes_the_estimate_and_the_usage_at_once(database_url):
    period = Period.containing(utcnow())
    async with portal_client(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        estimate = await read(client, "/customers/cus_de/estimate")
        assert D(estimate.json()["totals"][0]["subtotal"]) == D("49.00")
        usage = await read(client, "/customers/cus_de/usage")
        assert [D(m["quantity"]) for m in usage.json()["meters"]] == [0, 0]
        hits = c.view_cache.stats.hits
        assert (
            await read(client, "/customers/cus_de/estimate", estimate.headers["etag"])
        ).status_code == 304
        assert (
            await read(client, "/customers/cus_de/usage", usage.headers["etag"])
        ).status_code == 304
        assert c.view_cache.stats.hits == hits + 2

        stamps = moments(period, 4)
        await send(
            client, [event(f"now-{i}", "cus_de", "api.request", at) for i, at in enumerate(stamps)]
        )
        estimate = await read(client, "/customers/cus_de/estimate", estimate.headers["etag"])
        assert estimate.status_code == 200
        assert D(estimate.json()["totals"][0]["subtotal"]) == D("49.04")  # 4 calls at 0.01
        usage = await read(client, "/customers/cus_de/usage", usage.headers["etag"])
        assert usage.status_code == 200
        assert [(m["code"], D(m["quantity"])) for m in usage.json()["meters"]] == [
            ("calls", 4),
            ("tokens", 0),
        ]
        assert sum(d["event_count"] for d in usage.json()["meters"][0]["daily"]) == 4

        # Another customer's usage moves the stamp too: recomputed, same content.
        await send(client, [event("fr-now", "cus_fr", "api.request", stamps[0])])
        again = await read(client, "/customers/cus_de/estimate")
        assert D(again.json()["totals"][0]["subtotal"]) == D("49.04")


async def test_a_change_made_by_another_process_is_seen_at_once(database_url):
    """Two gateways on one database, each with its own in-process cache (as two
    processes have): what one bills, posts or voids, the other shows on its next read."""
    async with portal_client(database_url) as reader, portal_client(database_url) as worker:
        await seed(reader.container, PLAN)
        await send(reader, JANUARY_USAGE)
        await worker.container.billing_runs.run(DEC)
        listing = await read(reader, "/customers/cus_de/invoices")
        assert [i["period"] for i in listing.json()["data"]] == ["2025-12"]
        assert (
            await read(reader, "/customers/cus_de/invoices", listing.headers["etag"])
        ).status_code == 304

        await worker.container.billing_runs.run(JAN)
        listing = await read(reader, "/customers/cus_de/invoices", listing.headers["etag"])
        assert listing.status_code == 200
        assert [i["period"] for i in listing.json()["data"]] == ["2025-12", "2026-01"]

        invoice_id = listing.json()["data"][1]["id"]
        detail = await read(reader, f"/invoices/{invoice_id}")
        assert detail.json()["status"] == "finalized"
        await worker.container.outbox.drain()
        detail = await read(reader, f"/invoices/{invoice_id}", detail.headers["etag"])
        assert detail.status_code == 200 and detail.json()["status"] == "posted"
        await void(worker, invoice_id, "void-elsewhere")
        detail = await read(reader, f"/invoices/{invoice_id}", detail.headers["etag"])
        assert detail.status_code == 200 and detail.json()["status"] == "void"


async def test_views_are_shared_through_redis_and_never_stale(sqlite_url, redis_url):
    """Redis only (no in-process tier): a view one gateway computed is served to another
    from Redis, under the configured prefix with a TTL; a void made by either is seen
    by both at once."""
    url, prefix = redis_url
    shared = {
        "redis_url": url,
        "redis_key_prefix": prefix,
        "experience_cache_bytes": 0,
        "experience_cache_ttl_seconds": 120,
    }
    async with portal_client(sqlite_url, **shared) as a, portal_client(sqlite_url, **shared) as b:
        await seed(a.container, PLAN)
        await send(a, JANUARY_USAGE)
        await a.container.billing_runs.run(JAN)
        await a.container.outbox.drain()
        page, _ = await a.container.invoices.list(customer_id="cus_de")
        path = f"/invoices/{page[0].id}"

        first = await read(a, path)
        assert (a.container.view_cache.stats.misses, b.container.view_cache.stats.hits) == (1, 0)
        from_redis = await read(b, path)
        assert b.container.view_cache.stats.hits == 1 and b.container.view_cache.stats.misses == 0
        assert (from_redis.content, from_redis.headers["etag"]) == (
            first.content,
            first.headers["etag"],
        )
        assert (await read(b, path, first.headers["etag"])).status_code == 304

        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:view:*")]
            ttls = [await client.ttl(key) for key in keys]
            assert ttls and all(0 < ttl <= 120 for ttl in ttls)
        finally:
            await client.aclose()

        await void(b, page[0].id, "void-redis")
        after = await read(a, path, first.headers["etag"])
        assert after.status_code == 200 and after.json()["status"] == "void"
        assert (await read(b, path)).headers["etag"] == after.headers["etag"]


async def test_usage_in_flux_is_not_settled(database_url, sessions):
    """While another transaction writes usage events, events with seqs below the highest
    visible one may still commit (PostgreSQL: concurrent writers commit out of order),
    so usage is not settled and no view is kept under its stamp; on SQLite writers are
    serialised and it is always settled. After the commit the stamp is the highest seq."""
    versions = DataVersions(sessions)
    row = {
        "source": "flux",
        "event_type": "api.request",
        "customer_id": "cus_de",
        "timestamp": utcnow(),
        "properties": {},
        "received_at": utcnow(),
        "matched": 1,
    }
    async with sessions.begin() as session:
        await session.execute(usage_events.insert(), [{**row, "event_id": "e0"}])
    settled = await versions.read(usage=True)
    assert settled.usage is not None and settled.usage >= 1
    assert await versions.usage_settled()
    postgres = sessions.kw["bind"].dialect.name == "postgresql"
    async with sessions() as writer:
        await writer.execute(usage_events.insert(), [{**row, "event_id": "e1"}])
        during = await versions.read(usage=True)
        assert during == settled  # the open insert is not visible
        assert await versions.usage_settled() is not postgres
        await writer.commit()
    assert await versions.usage_settled()
    after = await versions.read(usage=True)
    async with sessions() as session:
        highest = (await session.execute(sa.select(sa.func.max(usage_events.c.seq)))).scalar()
    assert after.usage == highest > settled.usage


async def test_a_usage_view_read_while_usage_is_in_flux_is_not_kept(database_url):
    """On PostgreSQL a portal usage read while an ingest transaction is open is answered
    but not kept (that transaction may commit a seq below the visible highest); the next
    read after it commits shows its event. On SQLite the view is kept at once."""
    period = Period.containing(utcnow())
    async with portal_client(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        postgres = c.sessions.kw["bind"].dialect.name == "postgresql"
        at = datetime.fromisoformat(moments(period, 1)[0])
        async with c.sessions() as writer:
            await writer.execute(
                usage_events.insert(),
                [
                    {
                        "event_id": "open-1",
                        "source": "flux",
                        "event_type": "api.request",
                        "customer_id": "cus_de",
                        "timestamp": at,
                        "properties": {},
                        "received_at": utcnow(),
                        "matched": 1,
                    }
                ],
            )
            stats = c.view_cache.stats
            before = (stats.misses, stats.uncached)
            during = await read(client, "/customers/cus_de/usage")
            assert during.status_code == 200
            assert during.json()["meters"][0]["quantity"] == "0"
            kept = (stats.misses, stats.uncached) == (before[0] + 1, before[1])
            assert kept is not postgres
            await writer.commit()
        after = await read(client, "/customers/cus_de/usage", during.headers["etag"])
        assert after.status_code == 200
        assert [D(m["quantity"]) for m in after.json()["meters"]] == [1, 0]
