"""A payment the ERP records before Meterline records the posting (the ERP took the
document, its answer is being written, the payment sync runs first) still counts: the
invoice ends ``paid`` (or ``partially_paid``), not stuck at ``posted``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.model import ErpPaymentIn
from canonical.time import Period, utcnow
from process_apis.tables import invoices
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, seed

INVOICES = "/process/billing/v1/invoices"


async def _pay(erp, document_id: str, amount: Decimal, ref: str) -> None:
    await erp.record_payment(
        ErpPaymentIn(
            external_ref=ref,
            document_id=document_id,
            amount=amount,
            currency="EUR",
            received_on=utcnow().date(),
            method="bank_transfer",
        )
    )


async def test_payment_synced_before_the_posting_is_recorded_counts(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(Period.containing(utcnow()))
        claimed = await c.posting.claim(await c.posting.due(10), "test", timedelta(minutes=2))
        assert len(claimed) >= 2
        full, part = claimed[0], claimed[1]
        documents = {i.id: await c.posting.submit(i, {}) for i in (full, part)}

        # Paid in the ERP, and synced, before the postings are recorded.
        await _pay(c.erp, documents[full.id].id, full.total, "bank-full")
        await _pay(c.erp, documents[part.id].id, Decimal("1.00"), "bank-part")
        assert await c.payments.sync() == 2
        waiting = (await client.get(f"{INVOICES}/{full.id}")).json()
        assert waiting["status"] == "finalized"
        assert Decimal(waiting["amount_paid"]) == full.total

        for invoice in (full, part):
            await c.posting.mark_posted(invoice.id, documents[invoice.id])

        paid = (await client.get(f"{INVOICES}/{full.id}")).json()
        assert paid["status"] == "paid"
        assert paid["erp_document_id"] == documents[full.id].id
        partly = (await client.get(f"{INVOICES}/{part.id}")).json()
        assert partly["status"] == "partially_paid"
        assert await _paid_at(c, full.id) is not None
        assert await _paid_at(c, part.id) is None
        listed = (await client.get(INVOICES, params={"status": "paid"})).json()["data"]
        assert [i["id"] for i in listed] == [full.id]

        entries, _ = await c.audit.list(subject_type="invoice", subject_id=full.id)
        assert [e.action for e in entries][-3:] == [
            "invoice.payment",
            "invoice.posted",
            "invoice.paid",
        ]


async def test_unpaid_document_is_posted(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(Period.containing(utcnow()))
        await c.outbox.drain()
        listed = (await client.get(INVOICES)).json()["data"]
        assert listed and {i["status"] for i in listed} == {"posted"}
        assert all([await _paid_at(c, i["id"]) is None for i in listed])


async def _paid_at(c, invoice_id: str):
    async with c.sessions() as session:
        return await session.scalar(
            sa.select(invoices.c.paid_at).where(invoices.c.id == invoice_id)
        )
