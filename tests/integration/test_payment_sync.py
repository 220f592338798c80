"""Payments recorded in the ERP flow back: a posted invoice becomes partially paid, then
paid; each payment is applied once however often the sync runs; the audit log says so."""

from __future__ import annotations

from decimal import Decimal

from canonical.model import ErpPaymentIn
from canonical.time import Period, utcnow
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


async def test_erp_payments_mark_invoices_partially_paid_then_paid(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(Period.containing(utcnow()))
        await c.outbox.drain()
        invoices = {i["customer_id"]: i for i in (await client.get(INVOICES)).json()["data"]}
        de, fr = invoices["cus_de"], invoices["cus_fr"]
        total = Decimal(de["total"])
        assert total > 10

        await _pay(c.erp, de["erp_document_id"], Decimal("10.00"), "bank-1")
        assert await c.payments.sync() == 1
        partly = (await client.get(f"{INVOICES}/{de['id']}")).json()
        assert partly["status"] == "partially_paid"
        assert Decimal(partly["amount_paid"]) == Decimal("10.00")

        # Nothing new: nothing applied twice.
        assert await c.payments.sync() == 0
        await _pay(c.erp, de["erp_document_id"], total - Decimal("10.00"), "bank-2")
        await _pay(c.erp, fr["erp_document_id"], Decimal(fr["total"]), "bank-3")
        assert await c.payments.sync() == 2
        paid = (await client.get(f"{INVOICES}/{de['id']}")).json()
        assert paid["status"] == "paid" and Decimal(paid["amount_paid"]) == total
        assert (await client.get(f"{INVOICES}/{fr['id']}")).json()["status"] == "paid"
        assert await c.payments.sync() == 0

        entries, _ = await c.audit.list(subject_type="invoice", subject_id=de["id"])
        assert [(e.action, e.actor) for e in entries][-2:] == [
            ("invoice.partially_paid", "erp"),
            ("invoice.paid", "erp"),
        ]
        listed = (await client.get(INVOICES, params={"status": "paid"})).json()["data"]
        assert {i["id"] for i in listed} == {de["id"], fr["id"]}
