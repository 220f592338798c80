"""The invoice lifecycle through the Process API: a posted invoice voided is reversed in
the ERP by a credit memo (the customer's receivable nets to zero, the ledger balances);
one voided before posting never reaches the ERP; illegal moves answer 409; every move is
audited."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from canonical.time import Period, utcnow
from process_apis.tables import postings
from tests.support.app import gateway_client
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, seed

INVOICES = "/process/billing/v1/invoices"


async def _billed(client) -> dict[str, dict]:
    """The current period billed (not posted yet); invoices by customer."""
    c = client.container
    await seed(c, USAGE_PLAN)
    await c.billing_runs.run(Period.containing(utcnow()))
    page = (await client.get(INVOICES)).json()["data"]
    return {invoice["customer_id"]: invoice for invoice in page}


async def _void(client, invoice_id: str, key: str, reason: str = "billed in error"):
    return await client.post(
        f"{INVOICES}/{invoice_id}/void", json={"reason": reason}, headers={"Idempotency-Key": key}
    )


async def test_voiding_a_posted_invoice_reverses_it_with_a_credit_memo(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        invoice = (await _billed(client))["cus_de"]
        await c.outbox.drain()
        assert (await client.get(f"{INVOICES}/{invoice['id']}")).json()["status"] == "posted"

        response = await _void(client, invoice["id"], "void-1")
        assert response.status_code == 200, response.text
        voided, memo = response.json()["invoice"], response.json()["credit_memo"]
        assert voided["status"] == "void" and voided["void_reason"] == "billed in error"
        assert memo["kind"] == "credit_memo" and memo["corrects_invoice_id"] == invoice["id"]
        assert memo["number"].startswith("CN-DE-") and memo["status"] == "finalized"
        assert memo["total"] == invoice["total"]
        assert [(line["charge_code"], line["amount"]) for line in memo["lines"]] == [
            (line["charge_code"], line["amount"]) for line in invoice["lines"]
        ]

        assert (await c.outbox.drain()).posted == 1
        document = await c.erp.find_document(memo["id"])
        assert document is not None and document.kind == "credit_memo"
        assert document.posting_date == utcnow().date()
        balances = await c.erp.account_balances()
        assert sum(balances.values()) == 0
        # cus_fr's invoice stays receivable; cus_de's is reversed.
        fr = (await _billed_totals(client))["cus_fr"]
        assert balances["1200"] == fr

        entries, _ = await c.audit.list(subject_type="invoice", subject_id=invoice["id"])
        assert [e.action for e in entries] == [
            "invoice.finalized",
            "invoice.posted",
            "invoice.voided",
        ]
        memo_entries, _ = await c.audit.list(subject_type="invoice", subject_id=memo["id"])
        assert [e.action for e in memo_entries] == ["credit_memo.issued", "invoice.posted"]

        # Replayed with its key; a second void is refused; a posted memo is not voided.
        replay = await _void(client, invoice["id"], "void-1")
        assert replay.headers["idempotent-replayed"] == "true"
        assert_problem(await _void(client, invoice["id"], "void-2"), 409, "invalid_transition")
        assert_problem(await _void(client, memo["id"], "void-3"), 409, "invalid_transition")


async def _billed_totals(client) -> dict[str, Decimal]:
    page = (await client.get(INVOICES, params={"status": "posted"})).json()["data"]
    return {i["customer_id"]: Decimal(i["total"]) for i in page if i["kind"] == "invoice"}


async def test_voiding_before_posting_keeps_it_out_of_the_erp(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        invoices = await _billed(client)
        de, fr = invoices["cus_de"], invoices["cus_fr"]
        response = await _void(client, de["id"], "void-early")
        assert response.status_code == 200, response.text
        assert response.json()["credit_memo"] is None

        # The outbox worker holds cus_fr's document right now: not voided meanwhile.
        async with c.sessions.begin() as session:
            await session.execute(
                sa.update(postings)
                .where(postings.c.invoice_id == fr["id"])
                .values(lease_owner="another-worker", lease_until=utcnow() + timedelta(minutes=1))
            )
        assert_problem(await _void(client, fr["id"], "void-busy"), 409, "conflict")

        async with c.sessions.begin() as session:
            await session.execute(sa.update(postings).values(lease_owner=None, lease_until=None))
        result = await c.outbox.drain()
        assert result.posted == 1
        assert await c.erp.find_document(de["id"]) is None
        assert await c.erp.find_document(fr["id"]) is not None
        listed = (await client.get(INVOICES, params={"status": "void"})).json()["data"]
        assert [i["id"] for i in listed] == [de["id"]]


async def test_a_finalized_invoice_cannot_be_finalized_again(sqlite_url):
    async with gateway_client(sqlite_url, worker_in_process=False) as client:
        invoice = (await _billed(client))["cus_de"]
        assert_problem(
            await client.post(
                f"{INVOICES}/{invoice['id']}/finalize", headers={"Idempotency-Key": "f"}
            ),
            409,
            "invalid_transition",
        )
        assert_problem(
            await client.post(f"{INVOICES}/{invoice['id']}/void", json={"reason": "x"}), 400
        )
        assert_problem(
            await client.post(
                f"{INVOICES}/inv_missing/void",
                json={"reason": "x"},
                headers={"Idempotency-Key": "m"},
            ),
            404,
        )
