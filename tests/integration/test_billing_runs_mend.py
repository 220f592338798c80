"""Billing runs over drafts and flaky systems: a period no run can finalize is finalized
once and handed to finance; a re-rating that changes a draft's currencies writes the new
one and voids the one gone; a refreshed subscription settles its hold and is counted;
concurrent refreshes leave one set of lines."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import msgspec
import sqlalchemy as sa

from canonical.model import Amendment, FlatCharge, PricePlan
from canonical.time import Period, utcnow
from process_apis.billing import drafts, runs
from process_apis.invoices.store import InvoiceStore
from process_apis.tables import invoice_lines
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, customer, seed

INVOICES = "/process/billing/v1/invoices"
USD = PricePlan(
    id="plan_usd",
    code="usd",
    name="usd",
    currency="USD",
    charges=[
        FlatCharge(code="platform", description="P", item_code="platform", amount=Decimal(10))
    ],
)


async def _documents(client, customer_id: str = "cus_de") -> list[dict]:
    page = await client.get(INVOICES, params={"customer_id": customer_id})
    return page.json()["data"]


async def test_a_draft_no_run_can_finalize_is_raised_once_not_rerun_forever(
    database_url, monkeypatch
):
    period = Period.containing(utcnow())
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        assert (await c.billing_runs.run(period)).counts.invoiced == 2
        # Cancelled back to before the period: no run bills (or finalizes) it any more.
        sub = await c.crm.get_subscription("sub_cus_de")
        await c.crm.put_subscription(msgspec.structs.replace(sub, end_date=period.first_day))
        later = utcnow() + timedelta(days=40)
        monkeypatch.setattr(drafts, "utcnow", lambda: later)
        monkeypatch.setattr(runs, "utcnow", lambda: later)
        started = []
        for _ in range(3):
            started += await c.billing_runs.start_finalizing()
            await c.billing_runner.run_pending()
        assert len(started) == 1
        [left] = await _documents(client)
        assert left["status"] == "draft"
        exceptions = await c.billing_runs._exceptions.open_subjects("draft_not_finalized")
        assert exceptions == {left["id"]}
        # The other customer's draft was finalized by that one run.
        assert [d["status"] for d in await _documents(client, "cus_fr")] == ["finalized"]
        # Finalized by hand: settled.
        done = await client.post(
            f"{INVOICES}/{left['id']}/finalize", headers={"Idempotency-Key": "finalize-left"}
        )
        assert done.status_code == 200, done.text
        assert not await c.billing_runs._exceptions.open_subjects("draft_not_finalized")


async def test_a_draft_moved_into_another_currency_writes_it_and_voids_the_old_one(
    database_url, monkeypatch
):
    period = Period.containing(utcnow())
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing.put_plan(USD)
        await c.billing_runs.run(period, ["cus_de"])
        sub = await c.crm.get_subscription("sub_cus_de")
        # Amended into USD for the period's last days: the draft gains a currency.
        await c.crm.put_subscription(
            msgspec.structs.replace(
                sub,
                amendments=[
                    Amendment(
                        effective_from=period.first_day + timedelta(days=10), plan_id="plan_usd"
                    )
                ],
            )
        )
        rerun = await c.billing_runs.run(period, ["cus_de"])
        docs = {d["currency"]: d for d in await _documents(client)}
        assert set(docs) == {"EUR", "USD"}
        assert docs["USD"]["status"] == "draft" and Decimal(docs["USD"]["subtotal"]) > 0
        assert rerun.counts.invoiced == 2  # the EUR draft re-rated, the USD one written
        # USD from the first day: EUR is no longer billed. Emptied while the window is
        # open, voided by the run that closes it.
        await c.crm.put_subscription(
            msgspec.structs.replace(
                sub, amendments=[Amendment(effective_from=period.first_day, plan_id="plan_usd")]
            )
        )
        await c.billing_runs.run(period, ["cus_de"])
        docs = {d["currency"]: d for d in await _documents(client)}
        assert docs["EUR"]["status"] == "draft" and Decimal(docs["EUR"]["total"]) == 0
        later = utcnow() + timedelta(days=40)
        monkeypatch.setattr(drafts, "utcnow", lambda: later)
        await c.billing_runs.run(period, ["cus_de"])
        docs = {d["currency"]: d for d in await _documents(client)}
        assert docs["EUR"]["status"] == "void"
        assert docs["USD"]["status"] == "finalized"


async def test_a_refreshed_draft_settles_its_hold_and_an_unchanged_one_is_skipped(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period, ["cus_de"])
        await c.crm.put_customer(customer("cus_de", legal_entity_id="le_gone"))
        held = await c.billing_runs.run(period, ["cus_de"])
        assert held.counts.held == 1
        await c.crm.put_customer(customer("cus_de"))
        again = await c.billing_runs.run(period, ["cus_de"])
        assert not await c.billing_runs._exceptions.open_subjects("billing_failed")
        # Nothing changed: the subscription is counted, as skipped.
        counts = again.counts
        assert (counts.rated, counts.invoiced, counts.skipped, counts.held) == (1, 0, 1, 0)


async def test_a_draft_refresh_compares_event_counts_and_service_dates(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period, ["cus_de"])
        [doc] = await _documents(client)
        draft = await InvoiceStore(c.sessions).get(doc["id"])
        line = draft.lines[0]
        moved = msgspec.structs.replace(
            line,
            event_count=line.event_count + 3,
            service_start=line.service_start + timedelta(days=1),
        )
        rerated = msgspec.structs.replace(draft, lines=[moved, *draft.lines[1:]])
        refresher = drafts.DraftRefresher(c.sessions)
        changed, new = await refresher.refresh(
            draft.subscription_id, period, [(rerated, [None] * len(rerated.lines))], False
        )
        assert (changed, new) == (1, [])
        stored = (await InvoiceStore(c.sessions).get(doc["id"])).lines[0]
        assert stored.event_count == line.event_count + 3
        assert stored.service_start == line.service_start + timedelta(days=1)


async def test_concurrent_refreshes_leave_one_set_of_lines(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(
        database_url, worker_in_process=False, billing_grace_days=1
    ) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period, ["cus_de"])
        [doc] = await _documents(client)
        draft = await InvoiceStore(c.sessions).get(doc["id"])

        def rerated(extra: int):
            lines = [
                msgspec.structs.replace(ln, quantity=ln.quantity + extra) for ln in draft.lines
            ]
            return msgspec.structs.replace(draft, lines=lines), [None] * len(lines)

        refresher = drafts.DraftRefresher(c.sessions)
        for attempt in range(5):
            await asyncio.gather(
                *(
                    refresher.refresh(
                        draft.subscription_id, period, [rerated(k + attempt * 2)], False
                    )
                    for k in (1, 2)
                )
            )
            async with c.sessions() as session:
                count = (
                    await session.execute(
                        sa.select(sa.func.count()).where(invoice_lines.c.invoice_id == draft.id)
                    )
                ).scalar_one()
            assert count == len(draft.lines)
