"""The reference ERP against SQLite and PostgreSQL, and its System API routes.

Expected journal amounts are worked out by hand in each test."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal as D

import pytest
import sqlalchemy as sa

from canonical.errors import BusinessRuleViolation, NotFound
from canonical.model import ErpInvoice, ErpInvoiceLine, ErpItem, LegalEntity
from system_apis.erp.http import HttpErp
from system_apis.erp.reference import ReferenceErp
from system_apis.erp.reference.tables import journal_entries
from system_apis.erp.routes import router
from tests.support.problems import assert_problem
from tests.support.systems import remote_system, system_app, system_client


@pytest.fixture
async def erp(sessions):
    erp = ReferenceErp(sessions)
    await erp.put_legal_entity(
        LegalEntity(
            id="le_de", name="Meterline GmbH", country="DE", currency="EUR", vat_id="DE999999999"
        )
    )
    await erp.put_legal_entity(
        LegalEntity(id="le_us", name="Meterline Inc", country="US", currency="USD", us_state="CA")
    )
    await erp.put_item(ErpItem(code="api-calls", name="API calls", revenue_account="4000"))
    await erp.put_item(ErpItem(code="storage", name="Storage", revenue_account="4100"))
    await erp.put_item(ErpItem(code="support", name="Support", revenue_account="4000"))
    return erp


def invoice(ref: str = "inv_1", kind: str = "invoice", lines=None, **overrides) -> ErpInvoice:
    fields = {
        "external_ref": ref,
        "kind": kind,
        "customer_id": "cus_a",
        "customer_name": "Acme GmbH",
        "legal_entity_id": "le_de",
        "currency": "EUR",
        "posting_date": date(2025, 3, 31),
        "lines": lines
        if lines is not None
        else [
            ErpInvoiceLine(
                item_code="api-calls", description="API", amount=D("100.00"), tax_amount=D("19.00")
            ),
            ErpInvoiceLine(
                item_code="storage", description="Storage", amount=D("25.50"), tax_amount=D("4.85")
            ),
            ErpInvoiceLine(
                item_code="support", description="Support", amount=D("10.00"), tax_amount=D("1.90")
            ),
        ],
    } | overrides
    return ErpInvoice(**fields)


def sides(doc) -> dict[str, tuple[D, D]]:
    return {line.account: (line.debit, line.credit) for line in doc.journal.lines}


async def journal_count(sessions) -> int:
    async with sessions() as s:
        return (await s.execute(sa.select(sa.func.count()).select_from(journal_entries))).scalar()


async def test_master_data_round_trip(erp):
    assert [e.id for e in await erp.list_legal_entities()] == ["le_de", "le_us"]
    assert (await erp.get_legal_entity("le_us")).us_state == "CA"
    assert [i.code for i in await erp.list_items()] == ["api-calls", "storage", "support"]
    await erp.put_item(ErpItem(code="storage", name="Storage GB", revenue_account="4200"))
    assert {i.code: i.revenue_account for i in await erp.list_items()}["storage"] == "4200"
    with pytest.raises(BusinessRuleViolation):
        await erp.put_item(ErpItem(code="x", name="X", revenue_account="1200"))  # AR control
    with pytest.raises(BusinessRuleViolation):
        await erp.put_item(ErpItem(code="x", name="X", revenue_account="2200"))  # tax payable
    with pytest.raises(NotFound):
        await erp.get_legal_entity("le_nowhere")


async def test_posting_creates_a_balanced_journal_with_the_expected_amounts(erp):
    doc = await erp.post_invoice(invoice())
    # net 100.00 + 25.50 + 10.00 = 135.50; tax 19.00 + 4.85 + 1.90 = 25.75; gross 161.25
    assert (doc.net_total, doc.tax_total, doc.total) == (D("135.50"), D("25.75"), D("161.25"))
    assert sides(doc) == {
        "1200": (D("161.25"), D("0")),
        "4000": (D("0"), D("110.00")),  # api-calls 100.00 + support 10.00
        "4100": (D("0"), D("25.50")),
        "2200": (D("0"), D("25.75")),
    }
    debits = sum(line.debit for line in doc.journal.lines)
    credits = sum(line.credit for line in doc.journal.lines)
    assert debits == credits == D("161.25")
    assert await erp.get_document(doc.id) == doc
    assert await erp.find_document("inv_1") == doc
    assert await erp.find_document("inv_unknown") is None


async def test_same_external_ref_twice_returns_the_same_document(erp, sessions):
    first = await erp.post_invoice(invoice())
    again = await erp.post_invoice(invoice())
    assert again.id == first.id and again.journal.id == first.journal.id
    assert await journal_count(sessions) == 1


async def test_concurrent_double_post_creates_one_document(erp, sessions):
    docs = await asyncio.gather(*(erp.post_invoice(invoice("inv_race")) for _ in range(5)))
    assert len({d.id for d in docs}) == 1
    listed, _ = await erp.list_documents()
    assert [d.id for d in listed] == [docs[0].id]
    assert await journal_count(sessions) == 1


async def test_closed_period_is_rejected_per_legal_entity(erp):
    assert (await erp.get_period("le_de", "2025-03")).status == "open"  # no row: open
    closed = await erp.set_period_status("le_de", "2025-03", "closed")
    assert closed.status == "closed"
    assert (await erp.get_period("le_de", "2025-03")).status == "closed"
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.post_invoice(invoice())
    assert caught.value.code == "period_closed"
    # Other periods and other legal entities stay open.
    await erp.post_invoice(invoice("inv_april", posting_date=date(2025, 4, 1)))
    await erp.post_invoice(invoice("inv_us", legal_entity_id="le_us", currency="USD"))
    await erp.set_period_status("le_de", "2025-03", "open")
    await erp.post_invoice(invoice())


async def test_unknown_item_entity_and_unrounded_amounts_are_rejected(erp, sessions):
    bad_item = [
        ErpInvoiceLine(item_code="nope", description="?", amount=D("1.00"), tax_amount=D("0"))
    ]
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.post_invoice(invoice(lines=bad_item))
    assert caught.value.code == "unknown_item"
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.post_invoice(invoice(legal_entity_id="le_mars"))
    assert caught.value.code == "unknown_legal_entity"
    unrounded = [
        ErpInvoiceLine(item_code="storage", description="s", amount=D("1.005"), tax_amount=D("0"))
    ]
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.post_invoice(invoice(lines=unrounded))
    assert caught.value.code == "amount_not_rounded"
    jpy = [
        ErpInvoiceLine(item_code="storage", description="s", amount=D("10.50"), tax_amount=D("0"))
    ]
    with pytest.raises(BusinessRuleViolation):
        await erp.post_invoice(invoice(lines=jpy, currency="JPY"))
    assert await journal_count(sessions) == 0
    assert await erp.list_documents() == ([], False)


async def test_credit_memo_reverses_the_sides_and_the_ledger_sums_to_zero(erp):
    await erp.post_invoice(invoice())
    memo = await erp.post_invoice(
        invoice(
            "cm_1",
            kind="credit_memo",
            lines=[
                ErpInvoiceLine(
                    item_code="storage",
                    description="refund",
                    amount=D("5.00"),
                    tax_amount=D("0.95"),
                ),
            ],
        )
    )
    assert sides(memo) == {
        "1200": (D("0"), D("5.95")),
        "4100": (D("5.00"), D("0")),
        "2200": (D("0.95"), D("0")),
    }
    await erp.post_invoice(
        invoice(
            "inv_us",
            legal_entity_id="le_us",
            currency="USD",
            lines=[
                ErpInvoiceLine(
                    item_code="api-calls", description="API", amount=D("7.25"), tax_amount=D("0.60")
                ),
            ],
        )
    )
    balances = await erp.account_balances("le_de")
    # 1200: 161.25 - 5.95; 4000: -110.00; 4100: -25.50 + 5.00; 2200: -25.75 + 0.95
    assert balances == {
        "1200": D("155.30"),
        "2200": D("-24.80"),
        "4000": D("-110.00"),
        "4100": D("-20.50"),
    }
    assert sum(balances.values()) == 0
    everything = await erp.account_balances()
    assert everything["4000"] == D("-117.25") and sum(everything.values()) == 0
    assert (await erp.account_balances(currency="USD"))["1200"] == D("7.85")


async def test_the_erp_customer_is_created_on_first_post(erp):
    await erp.post_invoice(invoice("inv_a", customer_id="cus_new"))
    await erp.post_invoice(invoice("inv_b", customer_id="cus_new", customer_name="Other name"))
    docs, more = await erp.list_documents(customer_id="cus_new")
    assert [d.external_ref for d in docs] == ["inv_a", "inv_b"] and not more


async def test_list_documents_pages_by_id(erp):
    ids = [(await erp.post_invoice(invoice(f"inv_{n}"))).id for n in range(3)]
    first, more = await erp.list_documents(limit=2)
    assert [d.id for d in first] == ids[:2] and more
    rest, more = await erp.list_documents(limit=2, starting_after=ids[1])
    assert [d.id for d in rest] == ids[2:] and not more


# --- routes and the HTTP adapter ----------------------------------------------------------


@pytest.fixture
def app(erp, engine):
    return system_app(router, engine=engine, erp=erp)


@pytest.fixture
async def client(app, engine):
    async with system_client(app, engine) as client:
        yield client


BODY = {
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


async def test_route_post_get_round_trip(client):
    posted = await client.post("/system/erp/v1/documents", json=BODY)
    assert posted.status_code == 201, posted.text
    doc = posted.json()
    assert doc["total"] == "119.00"
    assert doc["journal"]["lines"][0] == {"account": "1200", "debit": "119.00", "credit": "0.00"}
    fetched = await client.get(f"/system/erp/v1/documents/{doc['id']}")
    assert fetched.json() == doc
    again = await client.post("/system/erp/v1/documents", json=BODY)
    assert again.json()["id"] == doc["id"]
    found = await client.get("/system/erp/v1/documents/lookup", params={"external_ref": "inv_http"})
    assert found.json()["id"] == doc["id"]
    balance = (await client.get("/system/erp/v1/trial-balance")).json()
    assert balance["balances"] == {"1200": "119.00", "2200": "-19.00", "4000": "-100.00"}


async def test_route_list_pagination(client):
    for n in range(3):
        await client.post("/system/erp/v1/documents", json=BODY | {"external_ref": f"r{n}"})
    first = (await client.get("/system/erp/v1/documents", params={"limit": 2})).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = (
        await client.get(
            "/system/erp/v1/documents",
            params={"limit": 2, "starting_after": first["data"][1]["id"]},
        )
    ).json()
    assert [d["external_ref"] for d in rest["data"]] == ["r2"] and rest["has_more"] is False
    items = (await client.get("/system/erp/v1/items", params={"limit": 2})).json()
    assert [i["code"] for i in items["data"]] == ["api-calls", "storage"] and items["has_more"]


async def test_route_problems(client):
    missing = await client.get("/system/erp/v1/documents/doc_nothing")
    assert_problem(missing, 404, "document_not_found")

    closed = await client.put(
        "/system/erp/v1/legal-entities/le_de/periods/2025-03", json={"status": "closed"}
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    refused = await client.post("/system/erp/v1/documents", json=BODY)
    assert_problem(refused, 422, "period_closed")

    bad_period = await client.get("/system/erp/v1/legal-entities/le_de/periods/2025-13")
    assert bad_period.status_code == 400
    negative = dict(BODY, lines=[dict(BODY["lines"][0], amount="-1.00")])
    assert (await client.post("/system/erp/v1/documents", json=negative)).status_code == 400


async def test_http_adapter_speaks_the_same_port(app, erp):
    async with remote_system("erp", app) as remote:
        http = HttpErp(remote)
        doc = await http.post_invoice(invoice("inv_remote"))
        assert doc == await erp.get_document(doc.id)
        assert await http.find_document("inv_remote") == doc
        assert await http.find_document("inv_none") is None
        assert await http.list_documents() == ([doc], False)
        assert [e.id for e in await http.list_legal_entities()] == ["le_de", "le_us"]
        assert len(await http.list_items()) == 3
        assert (await http.set_period_status("le_de", "2025-02", "closed")).status == "closed"
        assert (await http.get_period("le_de", "2025-02")).status == "closed"
        assert await http.account_balances("le_de") == await erp.account_balances("le_de")
        with pytest.raises(BusinessRuleViolation) as caught:
            await http.post_invoice(invoice("inv_feb", posting_date=date(2025, 2, 1)))
        assert caught.value.code == "period_closed"
        with pytest.raises(NotFound):
            await http.get_legal_entity("le_nowhere")
