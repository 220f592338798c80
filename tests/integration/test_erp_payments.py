"""Customer payments in the reference ERP against SQLite and PostgreSQL: the rules, the
idempotency by external_ref, the commit-ordered listing, the ledger, and the same port
through the System API routes and the HTTP adapter.

Expected amounts are worked out by hand in each test."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal as D

import pytest

from canonical.errors import BusinessRuleViolation, Conflict, InvalidRequest, NotFound
from canonical.model import ErpInvoice, ErpInvoiceLine, ErpItem, ErpPaymentIn, LegalEntity
from system_apis.erp.http import HttpErp
from system_apis.erp.reference import ReferenceErp
from system_apis.erp.routes import router
from tests.support.problems import assert_problem
from tests.support.systems import remote_system, system_app, system_client


@pytest.fixture
async def erp(sessions):
    erp = ReferenceErp(sessions)
    await erp.put_legal_entity(
        LegalEntity(id="le_de", name="Meterline GmbH", country="DE", currency="EUR")
    )
    await erp.put_legal_entity(
        LegalEntity(id="le_us", name="Meterline Inc", country="US", currency="USD", us_state="CA")
    )
    await erp.put_item(ErpItem(code="api-calls", name="API calls", revenue_account="4000"))
    return erp


def invoice(ref: str = "inv_1", kind: str = "invoice", net="100.00", tax="19.00", **overrides):
    fields = {
        "external_ref": ref,
        "kind": kind,
        "customer_id": "cus_a",
        "customer_name": "Acme GmbH",
        "legal_entity_id": "le_de",
        "currency": "EUR",
        "posting_date": date(2025, 3, 31),
        "lines": [
            ErpInvoiceLine(
                item_code="api-calls", description="API", amount=D(net), tax_amount=D(tax)
            )
        ],
    } | overrides
    return ErpInvoice(**fields)


def payment(document_id: str, amount="119.00", ref: str = "bank_1", **overrides):
    fields = {
        "external_ref": ref,
        "document_id": document_id,
        "amount": D(amount),
        "currency": "EUR",
        "received_on": date(2025, 4, 15),
        "method": "bank_transfer",
        "reference": "INV inv_1",
    } | overrides
    return ErpPaymentIn(**fields)


def sides(entry) -> dict[str, tuple[D, D]]:
    return {line.account: (line.debit, line.credit) for line in entry.lines}


async def refused(call, code: str, error=BusinessRuleViolation) -> str:
    with pytest.raises(error) as caught:
        await call
    assert caught.value.code == code, caught.value.detail
    return caught.value.detail


# --- recording ----------------------------------------------------------------------------


async def test_a_full_payment_settles_the_document_with_a_bank_entry(erp):
    doc = await erp.post_invoice(invoice())  # gross 100.00 + 19.00 = 119.00
    paid = await erp.record_payment(payment(doc.id))
    assert paid.id.startswith("pay_")
    assert (paid.document_id, paid.document_external_ref) == (doc.id, "inv_1")
    assert (paid.customer_id, paid.legal_entity_id) == ("cus_a", "le_de")
    assert (paid.amount, paid.currency, paid.received_on) == (D("119.00"), "EUR", date(2025, 4, 15))
    assert (paid.method, paid.reference) == ("bank_transfer", "INV inv_1")
    assert paid.document_total == paid.document_amount_paid == D("119.00")
    assert sides(paid.journal) == {"1000": (D("119.00"), D("0")), "1200": (D("0"), D("119.00"))}
    assert paid.journal.posting_date == date(2025, 4, 15)
    assert paid.journal.document_id == doc.id
    after = await erp.get_document(doc.id)
    assert after.amount_paid == D("119.00")
    # The document's journal is still the entry that posted it, not the payment's.
    assert after.journal == doc.journal
    assert (await erp.find_document("inv_1")).amount_paid == D("119.00")
    assert doc.amount_paid == D("0.00")


async def test_partial_payments_add_up_to_the_total_and_no_further(erp):
    doc = await erp.post_invoice(invoice())
    running = []
    for n, amount in enumerate(["50.00", "40", "29.00"]):
        paid = await erp.record_payment(payment(doc.id, amount, ref=f"bank_{n}"))
        running.append(paid.document_amount_paid)
    assert running == [D("50.00"), D("90.00"), D("119.00")]
    assert (await erp.get_document(doc.id)).amount_paid == D("119.00")
    detail = await refused(erp.record_payment(payment(doc.id, "0.01", ref="bank_9")), "overpayment")
    assert "0.00 EUR of 119.00 EUR" in detail


async def test_the_same_payment_twice_is_recorded_once(erp):
    doc = await erp.post_invoice(invoice())
    first = await erp.record_payment(payment(doc.id, "60.00"))
    # The same amount written another way is the same payment.
    again = await erp.record_payment(payment(doc.id, "60"))
    assert again == first
    assert (await erp.get_document(doc.id)).amount_paid == D("60.00")
    assert await erp.list_payments() == ([first], False)
    assert (await erp.account_balances())["1000"] == D("60.00")


async def test_another_payment_under_a_recorded_external_ref_is_a_conflict(erp):
    doc = await erp.post_invoice(invoice())
    other = await erp.post_invoice(invoice("inv_2"))
    first = await erp.record_payment(payment(doc.id, "60.00"))
    for changed in (
        payment(doc.id, "59.00"),
        payment(other.id, "60.00"),
        payment(doc.id, "60.00", received_on=date(2025, 4, 16)),
        payment(doc.id, "60.00", reference="something else"),
    ):
        detail = await refused(erp.record_payment(changed), "external_ref_conflict", Conflict)
        assert first.id in detail
    assert await erp.list_payments() == ([first], False)


async def test_concurrent_payments_never_overpay_and_a_resend_stays_one(erp):
    doc = await erp.post_invoice(invoice())
    same = await asyncio.gather(*(erp.record_payment(payment(doc.id, "10.00")) for _ in range(4)))
    assert len({p.id for p in same}) == 1
    # 109.00 still open: two payments of 50.00 fit, the third does not.
    outcomes = await asyncio.gather(
        *(erp.record_payment(payment(doc.id, "50.00", ref=f"race_{n}")) for n in range(3)),
        return_exceptions=True,
    )
    refusals = [o for o in outcomes if isinstance(o, BusinessRuleViolation)]
    assert len(refusals) == 1 and refusals[0].code == "overpayment"
    listed, _ = await erp.list_payments()
    assert [p.document_amount_paid for p in listed] == [D("10.00"), D("60.00"), D("110.00")]
    assert (await erp.get_document(doc.id)).amount_paid == D("110.00")


# --- rules --------------------------------------------------------------------------------


async def test_payment_rules_refuse_and_record_nothing(erp):
    doc = await erp.post_invoice(invoice())
    memo = await erp.post_invoice(invoice("cm_1", kind="credit_memo", net="10.00", tax="1.90"))
    before = await erp.account_balances()

    await refused(erp.record_payment(payment(doc.id, "119.01")), "overpayment")
    await refused(erp.record_payment(payment(doc.id, currency="USD")), "currency_mismatch")
    await refused(erp.record_payment(payment(memo.id, "11.90")), "document_not_payable")
    await refused(erp.record_payment(payment(doc.id, "1.005")), "amount_not_rounded")
    await refused(erp.record_payment(payment("doc_nothing")), "document_not_found", NotFound)
    await refused(erp.record_payment(payment(doc.id, "0")), "invalid_field", InvalidRequest)
    await refused(erp.record_payment(payment(doc.id, "-5.00")), "invalid_field", InvalidRequest)

    assert await erp.list_payments() == ([], False)
    assert await erp.account_balances() == before
    assert (await erp.get_document(doc.id)).amount_paid == D("0.00")


async def test_a_payment_into_a_closed_period_is_refused(erp):
    doc = await erp.post_invoice(invoice())  # posted in March
    await erp.set_period_status("le_de", "2025-04", "closed")
    detail = await refused(erp.record_payment(payment(doc.id)), "period_closed")
    assert "2025-04" in detail
    # March is open (the document's own period does not matter), April of le_us too.
    await erp.set_period_status("le_de", "2025-03", "closed")
    await refused(
        erp.record_payment(payment(doc.id, received_on=date(2025, 3, 31))), "period_closed"
    )
    paid = await erp.record_payment(payment(doc.id, received_on=date(2025, 5, 2)))
    assert paid.journal.posting_date == date(2025, 5, 2)
    us = await erp.post_invoice(invoice("inv_us", legal_entity_id="le_us", currency="USD"))
    await erp.record_payment(payment(us.id, ref="bank_us", currency="USD"))


async def test_a_debit_memo_is_paid_like_an_invoice(erp):
    memo = await erp.post_invoice(invoice("dm_1", kind="debit_memo", net="5.00", tax="0.95"))
    paid = await erp.record_payment(payment(memo.id, "5.95"))
    assert paid.document_external_ref == "dm_1" and paid.document_amount_paid == D("5.95")


# --- listing ------------------------------------------------------------------------------


async def test_listing_resumes_after_the_last_payment_seen(erp):
    docs = [await erp.post_invoice(invoice(f"inv_{n}")) for n in range(3)]
    recorded = [
        await erp.record_payment(payment(docs[n % 3].id, "20.00", ref=f"bank_{n}"))
        for n in range(5)
    ]
    first, more = await erp.list_payments(limit=2)
    assert first == recorded[:2] and more
    rest, more = await erp.list_payments(after=first[-1].id, limit=2)
    assert rest == recorded[2:4] and more
    last, more = await erp.list_payments(after=rest[-1].id, limit=2)
    assert last == recorded[4:] and not more
    assert await erp.list_payments(after=recorded[-1].id) == ([], False)
    assert (await erp.list_payments())[0] == recorded
    # A payment recorded later comes after the cursor, never before it.
    late = await erp.record_payment(payment(docs[0].id, "1.00", ref="bank_late"))
    assert await erp.list_payments(after=recorded[-1].id) == ([late], False)
    await refused(erp.list_payments(after="pay_nothing"), "payment_not_found", NotFound)


# --- the ledger ---------------------------------------------------------------------------


async def test_the_ledger_balances_and_receivables_shrink_by_the_payments(erp):
    doc = await erp.post_invoice(invoice())  # 119.00
    await erp.post_invoice(invoice("cm_1", kind="credit_memo", net="10.00", tax="1.90"))  # 11.90
    us = await erp.post_invoice(
        invoice("inv_us", legal_entity_id="le_us", currency="USD", net="7.25", tax="0.60")
    )  # 7.85
    await erp.record_payment(payment(doc.id, "100.00", ref="bank_1"))
    await erp.record_payment(payment(doc.id, "19.00", ref="bank_2"))
    await erp.record_payment(payment(us.id, "7.85", ref="bank_3", currency="USD"))

    eur = await erp.account_balances("le_de", "EUR")
    # 1000: 100.00 + 19.00; 1200: 119.00 - 11.90 - 119.00; 4000: -100.00 + 10.00;
    # 2200: -19.00 + 1.90
    assert eur == {
        "1000": D("119.00"),
        "1200": D("-11.90"),
        "2200": D("-17.10"),
        "4000": D("-90.00"),
    }
    assert sum(eur.values()) == 0
    usd = await erp.account_balances(currency="USD")
    assert (usd["1000"], usd["1200"]) == (D("7.85"), D("0.00"))
    assert sum(usd.values()) == 0
    assert sum((await erp.account_balances()).values()) == 0


# --- routes and the HTTP adapter ----------------------------------------------------------


@pytest.fixture
def app(erp, engine):
    return system_app(router, engine=engine, erp=erp)


@pytest.fixture
async def client(app, engine):
    async with system_client(app, engine) as client:
        yield client


DOCUMENT = {
    "external_ref": "inv_http",
    "kind": "invoice",
    "customer_id": "cus_a",
    "customer_name": "Acme GmbH",
    "legal_entity_id": "le_de",
    "currency": "EUR",
    "posting_date": "2025-03-31",
    "lines": [
        {"item_code": "api-calls", "description": "API", "amount": "100.00", "tax_amount": "19.00"}
    ],
}


async def test_route_record_list_and_problems(client):
    doc = (await client.post("/system/erp/v1/documents", json=DOCUMENT)).json()
    body = {
        "external_ref": "bank_http",
        "document_id": doc["id"],
        "amount": "19.00",
        "currency": "EUR",
        "received_on": "2025-04-15",
    }
    posted = await client.post("/system/erp/v1/payments", json=body)
    assert posted.status_code == 201, posted.text
    paid = posted.json()
    assert paid["amount"] == "19.00" and paid["document_external_ref"] == "inv_http"
    assert (paid["document_total"], paid["document_amount_paid"]) == ("119.00", "19.00")
    assert paid["method"] is None
    again = await client.post("/system/erp/v1/payments", json=body)
    assert again.status_code == 201 and again.json() == paid
    fetched = (await client.get(f"/system/erp/v1/documents/{doc['id']}")).json()
    assert fetched["amount_paid"] == "19.00"

    listed = (await client.get("/system/erp/v1/payments")).json()
    assert listed == {"object": "list", "data": [paid], "has_more": False}
    second = (
        await client.post("/system/erp/v1/payments", json=body | {"external_ref": "bank_2"})
    ).json()
    page = await client.get(
        "/system/erp/v1/payments", params={"starting_after": paid["id"], "limit": 1}
    )
    assert page.json() == {"object": "list", "data": [second], "has_more": False}

    conflict = await client.post("/system/erp/v1/payments", json=body | {"amount": "1.00"})
    assert_problem(conflict, 409, "external_ref_conflict")
    over = await client.post(
        "/system/erp/v1/payments", json=body | {"external_ref": "bank_3", "amount": "100.00"}
    )
    assert_problem(over, 422, "overpayment")
    missing = await client.post(
        "/system/erp/v1/payments", json=body | {"external_ref": "b4", "document_id": "doc_x"}
    )
    assert_problem(missing, 404, "document_not_found")
    cursor = await client.get("/system/erp/v1/payments", params={"starting_after": "pay_x"})
    assert_problem(cursor, 404, "payment_not_found")
    for bad in ({"amount": "0"}, {"amount": "-1.00"}, {"currency": "EURO"}, {"extra": 1}):
        response = await client.post("/system/erp/v1/payments", json=body | bad)
        assert_problem(response, 400)
    assert_problem(await client.get("/system/erp/v1/payments", params={"limit": 101}), 400)


async def test_http_adapter_speaks_the_same_payment_port(app, erp):
    doc = await erp.post_invoice(invoice())
    async with remote_system("erp", app) as remote:
        http = HttpErp(remote)
        paid = await http.record_payment(payment(doc.id, "100.00"))
        assert paid == (await erp.list_payments())[0][0]
        assert await http.record_payment(payment(doc.id, "100.00")) == paid
        second = await http.record_payment(payment(doc.id, "19.00", ref="bank_2", method=None))
        assert second.document_amount_paid == D("119.00") and second.method is None
        assert await http.list_payments(limit=1) == ([paid], True)
        assert await http.list_payments(after=paid.id, limit=500) == ([second], False)
        assert (await http.get_document(doc.id)).amount_paid == D("119.00")
        with pytest.raises(Conflict):
            await http.record_payment(payment(doc.id, "1.00"))
        with pytest.raises(BusinessRuleViolation) as caught:
            await http.record_payment(payment(doc.id, "1.00", ref="bank_3"))
        assert caught.value.code == "overpayment"
        with pytest.raises(NotFound):
            await http.list_payments(after="pay_unknown")
