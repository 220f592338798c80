"""The customer portal API, route by route, against the small billing world of
tests/support/portal.py (two customers, December 2025 and January 2026 billed and
posted), whose figures are worked out by hand (never by the code under test)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import msgspec

from canonical.ids import new_id
from canonical.model import Subscription
from canonical.time import Period, utcnow
from process_apis.invoices.store import write_invoice
from tests.support.auth import bearer
from tests.support.portal import (
    DEC,
    JAN,
    PLAN,
    PORTAL,
    build_world,
    pay,
    portal_client,
    void,
)
from tests.support.problems import assert_problem, not_found_shape
from tests.support.seeding import customer, seed

D = Decimal


async def get_json(client: httpx.AsyncClient, path: str, **params) -> dict:
    response = await client.get(PORTAL + path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["etag"].startswith('"')
    assert response.headers["cache-control"] == "private, no-cache"
    return response.json()


def amounts(items: list[dict], *fields: str) -> list[tuple]:
    return [
        tuple(item[f] if f in ("id", "kind", "status", "period") else D(item[f]) for f in fields)
        for item in items
    ]


async def test_invoices_with_filters_pages_lines_tax_memos_and_payments(database_url):
    async with portal_client(database_url) as client:
        c = client.container
        invoices = await build_world(client)
        dec, jan = invoices["cus_de", "2025-12"], invoices["cus_de", "2026-01"]

        listed = await get_json(client, "/customers/cus_de/invoices")
        assert [(i["id"], i["period"], i["status"], i["kind"]) for i in listed["data"]] == [
            (dec.id, "2025-12", "posted", "invoice"),
            (jan.id, "2026-01", "posted", "invoice"),
        ]
        assert amounts(listed["data"], "subtotal", "tax_total", "total", "amount_due") == [
            (D("49.00"), D("9.31"), D("58.31"), D("58.31")),
            (D("49.18"), D("9.35"), D("58.53"), D("58.53")),
        ]
        january = await get_json(client, "/customers/cus_de/invoices", period="2026-01")
        assert [i["id"] for i in january["data"]] == [jan.id]
        first = await get_json(client, "/customers/cus_de/invoices", limit=1)
        assert ([i["id"] for i in first["data"]], first["has_more"]) == ([dec.id], True)
        rest = await get_json(client, "/customers/cus_de/invoices", limit=1, starting_after=dec.id)
        assert ([i["id"] for i in rest["data"]], rest["has_more"]) == ([jan.id], False)
        assert (await get_json(client, "/customers/cus_de/invoices", status="paid"))["data"] == []

        detail = await get_json(client, f"/invoices/{jan.id}")
        assert detail["customer"] == {
            "id": "cus_de",
            "name": "Kunde GmbH",
            "billing_country": "DE",
            "currency": "EUR",
        }
        assert [
            (line["description"], D(line["quantity"]), D(line["amount"]), D(line["tax_amount"]))
            for line in detail["lines"]
        ] == [
            ("Platform fee", D(1), D("49.00"), D("9.31")),
            ("API calls", D(3), D("0.03"), D("0.01")),
            ("Tokens", D(1500), D("0.15"), D("0.03")),
        ]
        assert [line["event_count"] for line in detail["lines"]] == [0, 3, 2]
        [vat] = detail["taxes"]
        assert (vat["kind"], D(vat["rate_percent"]), vat["jurisdiction"]) == ("domestic", 19, "DE")
        assert (D(vat["taxable_amount"]), D(vat["tax_amount"])) == (D("49.18"), D("9.35"))
        assert detail["memos"] == [] and detail["payments"] == []

        # Payments: December in full, January 10.00 of 58.53.
        await pay(c, dec, "58.31", "bank-dec")
        await pay(c, jan, "10.00", "bank-jan")
        assert await c.payments.sync() == 2
        detail = await get_json(client, f"/invoices/{jan.id}")
        assert detail["status"] == "partially_paid"
        assert (D(detail["amount_paid"]), D(detail["amount_due"])) == (D("10.00"), D("48.53"))
        assert [(D(p["amount"]), p["currency"]) for p in detail["payments"]] == [
            (D("10.00"), "EUR")
        ]
        paid = await get_json(client, "/customers/cus_de/invoices", status="paid")
        assert [i["id"] for i in paid["data"]] == [dec.id]
        partly = await get_json(client, "/customers/cus_de/invoices", status="partially_paid")
        assert [i["id"] for i in partly["data"]] == [jan.id]

        # cus_fr's January invoice, voided once posted: reversed by a credit memo.
        fr_jan = invoices["cus_fr", "2026-01"]
        memo = (await void(client, fr_jan.id, "void-fr-jan"))["credit_memo"]
        detail = await get_json(client, f"/invoices/{fr_jan.id}")
        assert (detail["status"], detail["void_reason"]) == ("void", "billed in error")
        assert D(detail["amount_due"]) == 0
        assert [(m["id"], m["kind"], m["corrects_invoice_id"]) for m in detail["memos"]] == [
            (memo["id"], "credit_memo", fr_jan.id)
        ]
        assert D(detail["memos"][0]["total"]) == D("49.01")
        [reverse] = detail["taxes"]
        assert (reverse["kind"], D(reverse["rate_percent"]), D(reverse["tax_amount"])) == (
            "reverse_charge",
            0,
            0,
        )
        assert reverse["note"] and detail["tax_notes"] == [reverse["note"]]
        documents = await get_json(client, "/customers/cus_fr/invoices", period="2026-01")
        assert [(i["id"], i["kind"], i["status"]) for i in documents["data"]] == [
            (fr_jan.id, "invoice", "void"),
            (memo["id"], "credit_memo", "finalized"),
        ]
        memo_view = await get_json(client, f"/invoices/{memo['id']}")
        assert memo_view["corrects_invoice_id"] == fr_jan.id
        assert D(memo_view["amount_due"]) == 0  # a credit memo owes the customer

        # Summaries: what each customer owes.
        de = await get_json(client, "/customers/cus_de")
        assert de["open_period"] == str(Period.containing(utcnow()))
        assert [(s["id"], s["plan_name"]) for s in de["subscriptions"]] == [
            ("sub_cus_de", "Portal plan")
        ]
        assert amounts(de["balances"], "invoiced", "credited", "paid", "balance") == [
            (D("116.84"), D(0), D("68.31"), D("48.53"))
        ]
        assert de["balances"][0]["open_documents"] == 1
        assert de["latest_invoice"]["id"] == jan.id
        fr = await get_json(client, "/customers/cus_fr")
        # The voided posted invoice and its credit memo cancel out: December stays due.
        assert amounts(fr["balances"], "invoiced", "credited", "paid", "balance") == [
            (D("98.01"), D("49.01"), D(0), D("49.00"))
        ]


async def test_tax_rates_print_as_plain_percentages(database_url):
    """France's 20 % reads "20" (a French consumer pays it, via OSS), Germany's "19",
    a reverse charge "0": the percentages a printed invoice shows, never 2E+1."""
    async with portal_client(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await c.crm.put_customer(customer("cus_fr_b2c", name="Jeanne Martin", billing_country="FR"))
        await c.crm.put_subscription(
            Subscription(
                id="sub_fr_b2c",
                customer_id="cus_fr_b2c",
                plan_id=PLAN.id,
                start_date=date(2020, 1, 1),
            )
        )
        await c.billing_runs.run(DEC)
        page, _ = await c.invoices.list(limit=10)
        invoice_of = {i.customer_id: i.id for i in page}

        printed = {}
        for customer_id in ("cus_fr_b2c", "cus_de", "cus_fr"):
            detail = await get_json(client, f"/invoices/{invoice_of[customer_id]}")
            [tax] = detail["taxes"]
            rates = {line["tax_rate_percent"] for line in detail["lines"]}
            printed[customer_id] = (tax["rate_percent"], tax["kind"], rates)
        assert printed == {
            "cus_fr_b2c": ("20", "oss", {"20"}),
            "cus_de": ("19", "domestic", {"19"}),
            "cus_fr": ("0", "reverse_charge", {"0"}),
        }
        fr = await get_json(client, f"/invoices/{invoice_of['cus_fr_b2c']}")
        assert (D(fr["taxes"][0]["tax_amount"]), D(fr["total"])) == (D("9.80"), D("58.80"))


async def test_a_draft_voided_before_finalization_is_never_shown(database_url):
    """A draft voided before it was finalized is void, yet was never issued: not listed
    (not even as void), its detail and lines answer the 404 of an unknown id, and it is
    not the customer's latest invoice, though it is January's and newer than the one
    issued."""
    async with portal_client(database_url) as client:
        c = client.container
        invoices = await build_world(client)
        dec, jan = invoices["cus_de", "2025-12"], invoices["cus_de", "2026-01"]
        draft = msgspec.structs.replace(
            jan,
            id=new_id("inv"),
            number=f"DRAFT-{new_id('x')}",
            subscription_id="sub_other",
            status="draft",
            erp_document_id=None,
            lines=[msgspec.structs.replace(line, id=new_id("il")) for line in jan.lines],
            created_at=utcnow(),
        )
        async with c.sessions.begin() as session:
            await write_invoice(session, draft, [None] * len(draft.lines))
        voided, memo = await c.lifecycle.void(draft.id, "not needed")
        assert (voided.status, memo) == ("void", None)

        listed = await get_json(client, "/customers/cus_de/invoices")
        assert [i["id"] for i in listed["data"]] == [dec.id, jan.id]
        assert (await get_json(client, "/customers/cus_de/invoices", status="void"))["data"] == []
        in_january = await get_json(client, "/customers/cus_de/invoices", period="2026-01")
        assert [i["id"] for i in in_january["data"]] == [jan.id]
        unknown = not_found_shape(await client.get(f"{PORTAL}/invoices/inv_nobody"), "inv_nobody")
        detail = await client.get(f"{PORTAL}/invoices/{draft.id}")
        assert not_found_shape(detail, draft.id) == unknown
        line = draft.lines[0].id
        events = await client.get(f"{PORTAL}/invoices/{draft.id}/lines/{line}/events")
        assert_problem(events, 404)
        summary = await get_json(client, "/customers/cus_de")
        assert summary["latest_invoice"]["id"] == jan.id
        # It was never in the ledger either: the balance is the two issued invoices'.
        assert amounts(summary["balances"], "invoiced") == [(D("116.84"),)]


async def test_usage_estimate_and_the_events_behind_a_line(database_url):
    async with portal_client(database_url) as client:
        invoices = await build_world(client)
        jan = invoices["cus_de", "2026-01"]

        usage = await get_json(client, "/customers/cus_de/usage", period="2026-01")
        assert (usage["period"], usage["open"]) == ("2026-01", False)
        assert (usage["period_start"], usage["period_end"]) == ("2026-01-01", "2026-02-01")
        calls, tokens = usage["meters"]
        assert (calls["code"], D(calls["quantity"]), calls["event_count"]) == ("calls", 3, 3)
        assert (tokens["code"], D(tokens["quantity"]), tokens["event_count"]) == ("tokens", 1500, 2)
        assert len(calls["daily"]) == 31 and calls["daily"][0]["day"] == "2026-01-01"
        nonzero = {
            m["code"]: {d["day"]: D(d["quantity"]) for d in m["daily"] if d["event_count"]}
            for m in usage["meters"]
        }
        assert nonzero == {
            "calls": {"2026-01-03": 2, "2026-01-05": 1},
            "tokens": {"2026-01-03": 1000, "2026-01-10": 500},
        }

        # As of January 4: two calls and 1,000 tokens so far; the fee is the month's.
        early = await get_json(client, "/customers/cus_de/estimate", as_of="2026-01-04T00:00:00Z")
        assert (early["period"], early["as_of"]) == ("2026-01", "2026-01-04T00:00:00Z")
        assert [
            (ch["charge_code"], D(ch["quantity"]), D(ch["amount"])) for ch in early["charges"]
        ] == [
            ("platform", 1, D("49.00")),
            ("calls", 2, D("0.02")),
            ("tokens", 1000, D("0.10")),
        ]
        assert [(t["currency"], D(t["subtotal"])) for t in early["totals"]] == [("EUR", D("49.12"))]
        # At the end of the period the estimate is what the invoice billed.
        late = await get_json(client, "/customers/cus_de/estimate", as_of="2026-01-31T23:59:59Z")
        assert D(late["totals"][0]["subtotal"]) == jan.subtotal == D("49.18")

        # The open period: no usage yet, a whole month's fee.
        now = await get_json(client, "/customers/cus_de/estimate")
        assert now["period"] == str(Period.containing(utcnow()))
        assert [(t["currency"], D(t["subtotal"])) for t in now["totals"]] == [("EUR", D("49.00"))]
        current = await get_json(client, "/customers/cus_de/usage")
        assert current["open"] is True
        assert len(current["meters"][0]["daily"]) == utcnow().day

        # The events behind January's calls line, two at a time, in event time order.
        line = next(
            line
            for line in (await get_json(client, f"/invoices/{jan.id}"))["lines"]
            if line["meter_code"] == "calls"
        )
        url = f"/invoices/{jan.id}/lines/{line['id']}/events"
        first = await get_json(client, url, limit=2)
        assert ([e["id"] for e in first["data"]], first["has_more"]) == (["c1", "c2"], True)
        rest = await get_json(client, url, limit=2, starting_after=first["data"][-1]["seq"])
        assert ([e["id"] for e in rest["data"]], rest["has_more"]) == (["c3"], False)
        assert rest["data"][0]["timestamp"] == "2026-01-05T09:00:00Z"
        # Another customer's event is no cursor of this line: refused as an unknown seq
        # is, so the cursor tells nothing of which events exist.
        fr_jan = invoices["cus_fr", "2026-01"]
        fr_line = next(line for line in fr_jan.lines if line.meter_code == "calls")
        [fr_event] = (await get_json(client, f"/invoices/{fr_jan.id}/lines/{fr_line.id}/events"))[
            "data"
        ]
        assert fr_event["id"] == "f1"
        for seq in (fr_event["seq"], 999_999):
            response = await client.get(PORTAL + url, params={"starting_after": seq})
            assert_problem(response, 400, "invalid_cursor")
        fee = next(
            line
            for line in (await get_json(client, f"/invoices/{jan.id}"))["lines"]
            if line["kind"] == "recurring"
        )
        assert (await get_json(client, f"/invoices/{jan.id}/lines/{fee['id']}/events"))[
            "data"
        ] == []
        assert_problem(await client.get(f"{PORTAL}/invoices/{jan.id}/lines/il_nothing/events"), 404)


CUSTOMER_ROUTES = ["", "/usage", "/estimate", "/invoices"]


async def test_partners_read_only_their_own_customers_on_every_route(database_url):
    """cus_de belongs to partner A, cus_fr to no partner. Partner A reads cus_de on every
    route; partner B, and partner A about cus_fr, get exactly the 404 of an unknown id,
    even right after a first-party client put those very views in the cache."""
    async with portal_client(database_url) as client:
        c = client.container
        invoices = await build_world(client, de_partner="prt_a")
        jan = invoices["cus_de", "2026-01"]
        line = next(line for line in jan.lines if line.meter_code == "calls")
        first_party = await bearer(client, c, ["portal:read"])
        partner_a = await bearer(client, c, ["portal:read"], partner_id="prt_a")
        partner_b = await bearer(client, c, ["portal:read"], partner_id="prt_b")

        invoice_paths = [f"/invoices/{jan.id}", f"/invoices/{jan.id}/lines/{line.id}/events"]
        customer_paths = [f"/customers/cus_de{route}" for route in CUSTOMER_ROUTES]
        etags = {}
        for path in customer_paths + invoice_paths:  # cached by the first party
            cached = await client.get(PORTAL + path, headers=first_party)
            assert cached.status_code == 200
            etags[path] = cached.headers["etag"]
            assert (await client.get(PORTAL + path, headers=partner_a)).status_code == 200
        for path, etag in etags.items():
            # Holding the current ETag tells another tenant nothing: 404, never 304.
            response = await client.get(PORTAL + path, headers={**partner_b, "If-None-Match": etag})
            assert_problem(response, 404)
            assert "etag" not in response.headers

        for route in CUSTOMER_ROUTES:
            unknown = not_found_shape(
                await client.get(f"{PORTAL}/customers/cus_nobody{route}", headers=partner_b),
                "cus_nobody",
            )
            for headers, customer_id in ((partner_b, "cus_de"), (partner_a, "cus_fr")):
                response = await client.get(
                    f"{PORTAL}/customers/{customer_id}{route}", headers=headers
                )
                assert not_found_shape(response, customer_id) == unknown, route
                assert "Kunde" not in response.text and "Client SAS" not in response.text
        unknown_invoice = not_found_shape(
            await client.get(f"{PORTAL}/invoices/inv_nobody", headers=partner_b), "inv_nobody"
        )
        response = await client.get(f"{PORTAL}/invoices/{jan.id}", headers=partner_b)
        assert not_found_shape(response, jan.id) == unknown_invoice
        unknown_line = not_found_shape(
            await client.get(
                f"{PORTAL}/invoices/inv_nobody/lines/{line.id}/events", headers=partner_b
            ),
            "inv_nobody",
        )
        response = await client.get(PORTAL + invoice_paths[1], headers=partner_b)
        assert not_found_shape(response, jan.id) == unknown_line
        assert "portal-test" not in response.text  # no event of it
        fr_jan = invoices["cus_fr", "2026-01"]
        response = await client.get(f"{PORTAL}/invoices/{fr_jan.id}", headers=partner_a)
        assert not_found_shape(response, fr_jan.id) == unknown_invoice


async def test_bad_parameters_answer_problems(sqlite_url):
    async with portal_client(sqlite_url) as client:
        invoices = await build_world(client)
        jan = invoices["cus_de", "2026-01"]
        line = jan.lines[1]
        cases = [
            ("/customers/cus_de/usage", {"period": "2026-13"}, 400, "validation_failed"),
            ("/customers/cus_de/usage", {"period": "1899-12"}, 400, "validation_failed"),
            ("/customers/cus_de/usage", {"period": "3000-01"}, 400, "validation_failed"),
            ("/customers/cus_de/usage", {"period": "2999-01"}, 422, "period_not_started"),
            ("/customers/cus_de/invoices", {"period": "26-01"}, 400, "validation_failed"),
            ("/customers/cus_de/invoices", {"status": "draft"}, 400, "validation_failed"),
            ("/customers/cus_de/invoices", {"limit": "0"}, 400, "validation_failed"),
            ("/customers/cus_de/invoices", {"limit": "101"}, 400, "validation_failed"),
            ("/customers/cus_de/invoices", {"starting_after": "a b"}, 400, "validation_failed"),
            ("/customers/cus_de/estimate", {"as_of": "yesterday"}, 400, "validation_failed"),
            (
                "/customers/cus_de/estimate",
                {"as_of": "2999-01-01T00:00:00Z"},
                422,
                "as_of_out_of_range",
            ),
            (
                "/customers/cus_de/estimate",
                {"as_of": "1960-01-01T00:00:00Z"},
                422,
                "as_of_out_of_range",
            ),
            (
                f"/invoices/{jan.id}/lines/{line.id}/events",
                {"starting_after": "0"},
                400,
                "validation_failed",
            ),
            (
                f"/invoices/{jan.id}/lines/{line.id}/events",
                {"starting_after": "999999"},
                400,
                "invalid_cursor",
            ),
        ]
        for path, params, status, code in cases:
            response = await client.get(PORTAL + path, params=params)
            assert_problem(response, status, code)
        # A past date-time with an offset is read in UTC.
        shifted = await get_json(
            client, "/customers/cus_de/estimate", as_of="2026-01-04T01:00:00+01:00"
        )
        assert shifted["as_of"] == "2026-01-04T00:00:00Z"
        assert D(shifted["totals"][0]["subtotal"]) == D("49.12")
        assert date.fromisoformat(shifted["period_start"]) == JAN.first_day
