"""The Partner API (``/experience/partner/v1``): a reseller reads its own customers, their
balances, documents with payment status, and usage, computed here from the prices and
payments the test states; pagination and filters; drafts stay invisible."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from canonical.ids import new_id
from canonical.model import (
    Customer,
    ErpItem,
    ErpPaymentIn,
    FlatCharge,
    PerUnitCharge,
    PricePlan,
    Subscription,
)
from canonical.time import Period, utcnow
from process_apis.invoices.store import write_invoice
from tests.support.app import gateway_client
from tests.support.auth import bearer
from tests.support.problems import assert_problem, not_found_shape
from tests.support.seeding import ITEMS, METERS, SELLER, customer, moments

PARTNER = "/experience/partner/v1"
EVENTS = "/process/usage/v1/events"
CENT = Decimal("0.01")
FEE, PER_CALL = Decimal("49.00"), Decimal("0.35")

PLAN = PricePlan(
    id="plan_partner",
    code="partner_plan",
    name="Partner plan",
    currency="EUR",
    charges=[
        FlatCharge(code="platform", description="Platform fee", item_code="platform", amount=FEE),
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=PER_CALL,
        ),
    ],
)

# Customer -> (partner, calls this period, VAT rate its invoices carry).
CUSTOMERS: dict[str, tuple[str | None, int, Decimal]] = {
    "cus_a1": ("prt_alpha", 10, Decimal("0.19")),
    "cus_a2": ("prt_alpha", 4, Decimal(0)),  # French, valid VAT number: reverse charge
    "cus_b1": ("prt_beta", 3, Decimal("0.19")),
    "cus_n1": (None, 2, Decimal("0.19")),  # nobody's: first-party only
}


def expected_total(calls: int, rate: Decimal) -> Decimal:
    """A month's invoice: the fee and the calls, each line's tax rounded half up."""
    lines = [FEE, (PER_CALL * calls).quantize(CENT, ROUND_HALF_UP)]
    tax = sum(((line * rate).quantize(CENT, ROUND_HALF_UP) for line in lines), Decimal(0))
    return sum(lines, Decimal(0)) + tax


def previous(period: Period) -> Period:
    return Period.containing(period.start - timedelta(days=1))


def _customer(customer_id: str) -> Customer:
    partner = CUSTOMERS[customer_id][0]
    if customer_id == "cus_a2":
        return customer(
            customer_id,
            name="Client SAS",
            billing_country="FR",
            tax_id="FR40303265045",
            partner_id=partner,
        )
    return customer(customer_id, name=f"Customer {customer_id}", partner_id=partner)


async def _pay(erp, document_id: str, amount: Decimal, ref: str) -> None:
    await erp.record_payment(
        ErpPaymentIn(
            external_ref=ref,
            document_id=document_id,
            amount=amount,
            currency="EUR",
            received_on=utcnow().date(),
        )
    )


async def build_world(client) -> dict:
    """Last month and this month billed and posted for every customer; cus_a1 paid last
    month in full and 10.00 of this month, then sent 2 late calls; cus_a2's invoice of
    this month voided (a credit memo reverses it); a draft of cus_a1 lying around.
    Returns the invoices by (customer, period) and the periods."""
    c = client.container
    await c.erp.put_legal_entity(SELLER)
    for code, account in ITEMS.items():
        await c.erp.put_item(ErpItem(code=code, name=code, revenue_account=account))
    for meter in METERS:
        await c.billing.put_meter(meter)
    await c.billing.put_plan(PLAN)
    for customer_id in CUSTOMERS:
        await c.crm.put_customer(_customer(customer_id))
        await c.crm.put_subscription(
            Subscription(
                id=f"sub_{customer_id}",
                customer_id=customer_id,
                plan_id=PLAN.id,
                start_date=date(2020, 1, 1),
            )
        )
    this = Period.containing(utcnow())
    last = previous(this)
    batch = [
        {
            "id": f"{customer_id}-{n}",
            "source": "partner-test",
            "event_type": "api.request",
            "customer_id": customer_id,
            "timestamp": at,
        }
        for customer_id, (_, calls, _) in CUSTOMERS.items()
        for n, at in enumerate(moments(this, calls))
    ]
    assert (await client.post(EVENTS, json=batch)).status_code == 200
    await c.billing_runs.run(last)
    await c.billing_runs.run(this)
    for invoice in (await c.invoices.list(limit=100))[0]:
        if invoice.status == "draft":  # the open period is billed as drafts: finalize early
            await c.lifecycle.finalize(invoice.id)
    await c.outbox.drain()
    page, _ = await c.invoices.list(limit=100)
    invoices = {(i.customer_id, str(i.period_start)[:7]): i for i in page}
    assert len(invoices) == 8

    a1_last, a1_this = invoices["cus_a1", str(last)], invoices["cus_a1", str(this)]
    await _pay(c.erp, a1_last.erp_document_id, a1_last.total, "bank-1")
    await _pay(c.erp, a1_this.erp_document_id, Decimal("10.00"), "bank-2")
    assert await c.payments.sync() == 2
    _, memo = await c.lifecycle.void(invoices["cus_a2", str(this)].id, "ordered by mistake")
    await c.outbox.drain()
    late = {"source": "partner-test", "event_type": "api.request", "customer_id": "cus_a1"}
    late_batch = [{"id": f"late-{n}", **late} for n in range(2)]
    assert (await client.post(EVENTS, json=late_batch)).status_code == 200

    # A draft is work in progress: no partner sees it, no balance counts it.
    draft = msgspec.structs.replace(
        a1_last,
        id=new_id("inv"),
        number=f"DRAFT-{new_id('x')}",
        subscription_id="sub_other",
        period_start=date(2025, 6, 1),
        period_end=date(2025, 7, 1),
        status="draft",
        erp_document_id=None,
        amount_paid=Decimal(0),
        lines=[msgspec.structs.replace(line, id=new_id("il")) for line in a1_last.lines],
    )
    async with c.sessions.begin() as session:
        await write_invoice(session, draft, [None] * len(draft.lines))
    return {"invoices": invoices, "memo": memo, "draft": draft, "this": this, "last": last}


async def partner_headers(client, partner_id: str) -> dict[str, str]:
    return await bearer(client, client.container, ["partner:read"], partner_id=partner_id)


def money(value: str) -> Decimal:
    return Decimal(value)


async def test_a_partner_reads_its_customers_balances_documents_and_usage(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        world = await build_world(client)
        this, last = world["this"], world["last"]
        inv = world["invoices"]
        alpha = await partner_headers(client, "prt_alpha")

        async def get(path: str, **params) -> dict:
            response = await client.get(PARTNER + path, headers=alpha, params=params)
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Policy"].startswith('"partner"')
            return response.json()

        # Customers: only its own, page by page.
        first = await get("/customers", limit=1)
        assert [c["id"] for c in first["data"]] == ["cus_a1"] and first["has_more"] is True
        rest = await get("/customers", limit=1, starting_after="cus_a1")
        assert [c["id"] for c in rest["data"]] == ["cus_a2"] and rest["has_more"] is False
        assert await get("/customers/cus_a2") == {
            "id": "cus_a2",
            "name": "Client SAS",
            "billing_country": "FR",
            "currency": "EUR",
            "tax_status": "taxable",
        }

        # cus_a1: last month paid in full, this month 10.00 of it.
        a1_last = expected_total(0, Decimal("0.19"))
        a1_this = expected_total(10, Decimal("0.19"))
        assert money(inv["cus_a1", str(this)].total) == a1_this  # the billing agrees
        summary = await get("/customers/cus_a1/billing-summary")
        (eur,) = summary["balances"]
        assert eur["currency"] == "EUR"
        assert money(eur["invoiced"]) == a1_last + a1_this
        assert money(eur["credited"]) == 0
        assert money(eur["paid"]) == a1_last + Decimal("10.00")
        assert money(eur["open_balance"]) == a1_this - Decimal("10.00")
        assert eur["open_documents"] == 1
        latest = summary["last_invoice"]
        assert latest["id"] == inv["cus_a1", str(this)].id and latest["period"] == str(this)
        assert latest["payment_status"] == "partially_paid"
        assert money(latest["amount_due"]) == a1_this - Decimal("10.00")

        # cus_a2: this month's invoice voided after posting; its credit memo cancels it.
        a2_last, a2_this = expected_total(0, Decimal(0)), expected_total(4, Decimal(0))
        (eur,) = (await get("/customers/cus_a2/billing-summary"))["balances"]
        assert money(eur["invoiced"]) == a2_last + a2_this
        assert money(eur["credited"]) == a2_this
        assert money(eur["paid"]) == 0
        assert money(eur["open_balance"]) == a2_last
        assert eur["open_documents"] == 1

        # Documents of cus_a1 page by page (the draft is not among them), with filters.
        ids = [inv["cus_a1", str(last)].id, inv["cus_a1", str(this)].id]
        page1 = await get("/customers/cus_a1/invoices", limit=1)
        page2 = await get("/customers/cus_a1/invoices", limit=1, starting_after=ids[0])
        assert [i["id"] for i in page1["data"]] == ids[:1] and page1["has_more"] is True
        assert [i["id"] for i in page2["data"]] == ids[1:] and page2["has_more"] is False
        by_status = {
            s: [i["id"] for i in (await get("/customers/cus_a1/invoices", status=s))["data"]]
            for s in ("paid", "partially_paid", "posted", "void")
        }
        assert by_status == {"paid": ids[:1], "partially_paid": ids[1:], "posted": [], "void": []}
        in_last = await get("/customers/cus_a1/invoices", period=str(last))
        assert [i["id"] for i in in_last["data"]] == ids[:1]
        assert (await get("/customers/cus_a1/invoices", period="2025-06"))["data"] == []

        # cus_a2 this month: the void invoice and the credit memo reversing it.
        void_id, memo = inv["cus_a2", str(this)].id, world["memo"]
        documents = (await get("/customers/cus_a2/invoices", period=str(this)))["data"]
        assert [(d["id"], d["kind"], d["status"], d["payment_status"]) for d in documents] == [
            (void_id, "invoice", "void", "void"),
            (memo.id, "credit_memo", "posted", "credit"),
        ]
        assert documents[1]["corrects_invoice_id"] == void_id
        assert money(documents[1]["total"]) == a2_this
        assert [money(d["amount_due"]) for d in documents] == [0, 0]

        # Payment status detail, with the payments received.
        paid = await get(f"/invoices/{ids[0]}")
        assert paid["payment_status"] == "paid" and money(paid["amount_due"]) == 0
        assert [(money(p["amount"]), p["received_on"]) for p in paid["payments"]] == [
            (a1_last, str(utcnow().date()))
        ]
        partly = await get(f"/invoices/{ids[1]}")
        assert partly["customer_name"] == "Customer cus_a1"
        assert money(partly["amount_paid"]) == Decimal("10.00")
        assert [money(p["amount"]) for p in partly["payments"]] == [Decimal("10.00")]
        unpaid = await get(f"/invoices/{inv['cus_a2', str(last)].id}")
        assert unpaid["payment_status"] == "unpaid" and unpaid["payments"] == []
        assert money(unpaid["amount_due"]) == a2_last

        # Usage: the 2 late calls are measured, not billed yet; a2's credit memo
        # cancels the billed calls of its voided invoice.
        usage = await get("/customers/cus_a1/usage")
        assert (usage["period"], usage["in_progress"]) == (str(this), True)
        assert [
            (m["meter_code"], money(m["quantity"]), m["event_count"], money(m["invoiced_quantity"]))
            for m in usage["meters"]
        ] == [("calls", 12, 12, 10)]
        before = await get("/customers/cus_a1/usage", period=str(last))
        assert before["in_progress"] is False
        assert before["period_start"] == str(last.first_day)
        (calls,) = before["meters"]
        assert (money(calls["quantity"]), calls["event_count"]) == (0, 0)
        assert money(calls["invoiced_quantity"]) == 0  # billed: no calls
        (calls,) = (await get("/customers/cus_a2/usage"))["meters"]
        assert (money(calls["quantity"]), money(calls["invoiced_quantity"])) == (4, 0)
        # A period that has not started has no usage to show: refused, as the portal does.
        following = Period.containing(this.end)
        refused = await client.get(
            PARTNER + "/customers/cus_a1/usage", headers=alpha, params={"period": str(following)}
        )
        assert_problem(refused, 422, "period_not_started")

        # A meter no plan of the period charges, yet a document of the period bills (a
        # debit memo for 5 GB of storage), is listed too and measured like the others.
        a1_invoice = inv["cus_a1", str(this)]
        calls_line = next(line for line in a1_invoice.lines if line.meter_code == "calls")
        storage_memo = msgspec.structs.replace(
            a1_invoice,
            id=new_id("inv"),
            number=f"DM-{new_id('x')}",
            kind="debit_memo",
            corrects_invoice_id=a1_invoice.id,
            status="finalized",
            erp_document_id=None,
            amount_paid=Decimal(0),
            lines=[
                msgspec.structs.replace(
                    calls_line, id=new_id("il"), meter_code="storage", quantity=Decimal(5)
                )
            ],
        )
        async with client.container.sessions.begin() as session:
            await write_invoice(session, storage_memo, [None])
        usage = await get("/customers/cus_a1/usage")
        assert [
            (m["meter_code"], money(m["quantity"]), m["event_count"], money(m["invoiced_quantity"]))
            for m in usage["meters"]
        ] == [("calls", 12, 12, 10), ("storage", 0, 0, 5)]


async def test_a_draft_voided_before_finalization_is_never_shown(database_url):
    """A draft of cus_a1 voided before it was finalized was never issued: its partner
    neither lists it (not even as void) nor reads it (the 404 of an unknown id), and it
    is not the last invoice, though it bills this period and is the newest."""
    async with gateway_client(database_url, worker_in_process=False) as client:
        world = await build_world(client)
        this, last = world["this"], world["last"]
        a1_this = world["invoices"]["cus_a1", str(this)]
        draft = msgspec.structs.replace(
            a1_this,
            id=new_id("inv"),
            number=f"DRAFT-{new_id('x')}",
            subscription_id="sub_other",
            status="draft",
            erp_document_id=None,
            amount_paid=Decimal(0),
            lines=[msgspec.structs.replace(line, id=new_id("il")) for line in a1_this.lines],
            created_at=utcnow(),
        )
        async with client.container.sessions.begin() as session:
            await write_invoice(session, draft, [None] * len(draft.lines))
        voided, memo = await client.container.lifecycle.void(draft.id, "not needed")
        assert (voided.status, memo) == ("void", None)
        alpha = await partner_headers(client, "prt_alpha")

        async def get(path: str, **params) -> dict:
            response = await client.get(PARTNER + path, headers=alpha, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        listed = await get("/customers/cus_a1/invoices")
        assert [i["id"] for i in listed["data"]] == [
            world["invoices"]["cus_a1", str(last)].id,
            a1_this.id,
        ]
        assert (await get("/customers/cus_a1/invoices", status="void"))["data"] == []
        unknown = await client.get(f"{PARTNER}/invoices/inv_nobody", headers=alpha)
        detail = await client.get(f"{PARTNER}/invoices/{draft.id}", headers=alpha)
        assert not_found_shape(detail, draft.id) == not_found_shape(unknown, "inv_nobody")
        summary = await get("/customers/cus_a1/billing-summary")
        assert summary["last_invoice"]["id"] == a1_this.id


CUSTOMER_PATHS = ("/customers/{}", "/customers/{}/billing-summary", "/customers/{}/invoices")
CUSTOMER_PATHS += ("/customers/{}/usage",)


async def test_other_tenants_answer_like_unknown_ids_and_claimless_tokens_are_refused(
    database_url,
):
    async with gateway_client(database_url, worker_in_process=False) as client:
        world = await build_world(client)
        alpha = await partner_headers(client, "prt_alpha")
        beta = await partner_headers(client, "prt_beta")

        async def shape(headers, template: str, asked: str) -> dict:
            response = await client.get(PARTNER + template.format(asked), headers=headers)
            for customer_id in CUSTOMERS:  # none of the world's customers, by name
                assert _customer(customer_id).name not in response.text
            return not_found_shape(response, asked)

        listing = await client.get(f"{PARTNER}/customers", headers=beta)
        assert [c["id"] for c in listing.json()["data"]] == ["cus_b1"]
        for headers, foreign in ((beta, ["cus_a1", "cus_a2", "cus_n1"]), (alpha, ["cus_b1"])):
            for template in CUSTOMER_PATHS:
                unknown = await shape(headers, template, "cus_nobody")
                assert unknown["code"] == "customer_not_found"
                for customer_id in foreign:
                    assert await shape(headers, template, customer_id) == unknown, template

        unknown_invoice = await shape(beta, "/invoices/{}", "inv_nobody")
        alphas = [i.id for (cid, _), i in world["invoices"].items() if cid.startswith("cus_a")]
        for invoice_id in [*alphas, world["memo"].id, world["draft"].id]:
            assert await shape(beta, "/invoices/{}", invoice_id) == unknown_invoice
        # Its own draft is not visible to alpha either.
        assert await shape(alpha, "/invoices/{}", world["draft"].id) == unknown_invoice

        # A token without a partner claim (a first-party client holding the scope) is
        # refused before anything is looked up; one without the scope too.
        claimless = await bearer(client, client.container, ["partner:read", "portal:read"])
        portal_only = await partner_headers_with(client, ["portal:read"], "prt_alpha")
        paths = ["/customers", *(t.format("cus_a1") for t in CUSTOMER_PATHS)]
        paths.append(f"/invoices/{alphas[0]}")
        for path in paths:
            refused = await client.get(PARTNER + path, headers=claimless)
            assert_problem(refused, 403, "partner_claim_required")
            assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
            assert "cus_a1" not in refused.json()["detail"]
            assert_problem(
                await client.get(PARTNER + path, headers=portal_only), 403, "insufficient_scope"
            )
            anonymous = client.build_request("GET", PARTNER + path)
            del anonymous.headers["Authorization"]  # the operator's, by default
            assert_problem(await client.send(anonymous), 401, "invalid_token")


async def partner_headers_with(client, scopes: list[str], partner_id: str) -> dict[str, str]:
    return await bearer(client, client.container, scopes, partner_id=partner_id)


BAD_REQUESTS = [
    ("/customers", {"limit": "0"}),
    ("/customers", {"limit": "101"}),
    ("/customers", {"limit": "ten"}),
    ("/customers", {"starting_after": "cus a1"}),
    ("/customers/cus_a1/invoices", {"status": "draft"}),
    ("/customers/cus_a1/invoices", {"status": "null"}),
    ("/customers/cus_a1/invoices", {"period": "2026-13"}),
    ("/customers/cus_a1/invoices", {"period": "26-01"}),
    ("/customers/cus_a1/usage", {"period": "2026-1"}),
    ("/customers/cus%20a1", {}),
    ("/invoices/" + "i" * 65, {}),
]


async def test_bad_parameters_are_validation_problems(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        alpha = await partner_headers(client, "prt_alpha")
        for path, params in BAD_REQUESTS:
            response = await client.get(PARTNER + path, params=params, headers=alpha)
            body = assert_problem(response, 400, "validation_failed")
            assert body["instance"].startswith(PARTNER), body
