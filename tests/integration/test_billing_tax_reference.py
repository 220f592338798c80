"""The reference billing and tax engines against SQLite and PostgreSQL, their System API
routes, and their HTTP adapters talking to those routes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from canonical import correlation
from canonical.errors import BusinessRuleViolation, Conflict, InvalidRequest, NotFound
from canonical.model import (
    FlatCharge,
    GraduatedCharge,
    Meter,
    MinimumCommitment,
    PerUnitCharge,
    PricePlan,
    Tier,
)
from system_apis.billing.http import HttpBilling
from system_apis.billing.port import RatingRequest
from system_apis.billing.reference import ReferenceBilling
from system_apis.billing.routes import router as billing_router
from system_apis.tax.http import HttpTax
from system_apis.tax.port import TaxableLine, TaxRequest
from system_apis.tax.reference import ReferenceTax
from system_apis.tax.reference.tables import quotes
from system_apis.tax.routes import router as tax_router
from tests.support.problems import assert_problem
from tests.support.systems import remote_system, system_app, system_client

D = Decimal
APRIL = {"period_start": date(2024, 4, 1), "period_end": date(2024, 5, 1)}


@pytest.fixture
def billing(sessions):
    return ReferenceBilling(sessions)


@pytest.fixture
def tax(sessions):
    return ReferenceTax(sessions)


@pytest.fixture
def app(billing, tax, engine):
    return system_app(billing_router, tax_router, engine=engine, billing=billing, tax=tax)


@pytest.fixture
async def client(app, engine):
    async with system_client(app, engine) as client:
        yield client


def meter(code="api_calls", id="mtr_1", **overrides) -> Meter:
    fields = {"name": "API calls", "event_type": "api.call", "aggregation": "count"} | overrides
    return Meter(id=id, code=code, **fields)


def pro_plan(id="plan_1", **overrides) -> PricePlan:
    charges = [
        GraduatedCharge(
            code="calls",
            description="API calls",
            item_code="API",
            meter_code="api_calls",
            tiers=[
                Tier(unit_price=D("0.10"), up_to=D(100)),
                Tier(unit_price=D("0.08"), flat_fee=D(5)),
            ],
        ),
        FlatCharge(code="base", description="Platform fee", item_code="BASE", amount=D(100)),
        MinimumCommitment(code="min", description="Minimum", item_code="MIN", amount=D(50)),
    ]
    fields = {"code": "pro", "name": "Pro", "currency": "EUR", "charges": charges} | overrides
    return PricePlan(id=id, **fields)


# --- meters --------------------------------------------------------------------------


async def test_meters_are_created_read_listed_and_replaced_by_code(billing):
    created = await billing.put_meter(meter())
    assert created == meter()
    assert await billing.get_meter("api_calls") == created
    storage = meter(
        "storage_gb",
        id="mtr_2",
        name="Storage",
        event_type="storage.sampled",
        aggregation="max",
        field="gb",
        unit="GB",
    )
    await billing.put_meter(storage)

    replaced = await billing.put_meter(meter(id="mtr_other", name="Calls v2", unit="call"))
    assert (replaced.id, replaced.name, replaced.unit) == ("mtr_1", "Calls v2", "call")
    assert await billing.list_meters() == [replaced, storage]

    page = await billing.meters_page(limit=1)
    assert (page.data, page.has_more) == ([replaced], True)
    page = await billing.meters_page(limit=1, starting_after=page.data[-1].id)
    assert (page.data, page.has_more) == ([storage], False)


async def test_an_id_taken_by_another_code_is_a_conflict(billing):
    await billing.put_meter(meter())
    with pytest.raises(Conflict):
        await billing.put_meter(meter("other_code", id="mtr_1"))
    assert [m.code for m in await billing.list_meters()] == ["api_calls"]


async def test_unknown_meters_are_not_found(billing):
    for code in ("nope", "bad\x00code"):  # the second never reaches the database
        with pytest.raises(NotFound):
            await billing.get_meter(code)


async def test_meters_are_found_by_event_type(billing):
    await billing.put_meter(meter())
    await billing.put_meter(meter("api_bytes", id="mtr_2", aggregation="sum", field="bytes"))
    await billing.put_meter(
        meter("seats", id="mtr_3", event_type="seat.counted", aggregation="latest", field="seats")
    )
    found = await billing.meters_for_event_types(["api.call", "unknown.type", "x\x00"])
    assert set(found) == {"api.call"}
    assert sorted(m.code for m in found["api.call"]) == ["api_bytes", "api_calls"]
    assert await billing.meters_for_event_types([]) == {}


async def test_meters_that_cannot_be_aggregated_are_refused(billing):
    with pytest.raises(InvalidRequest, match="field"):
        await billing.put_meter(meter(aggregation="sum"))
    with pytest.raises(InvalidRequest):
        await billing.put_meter(meter(name="x" * 201))
    with pytest.raises(InvalidRequest):
        await billing.put_meter(meter(code="Not A Code"))
    assert await billing.list_meters() == []


# --- plans ---------------------------------------------------------------------------


async def test_plans_are_stored_read_by_id_or_code_and_replaced_by_code(billing):
    await billing.put_meter(meter())
    stored = await billing.put_plan(pro_plan())
    assert stored == pro_plan()
    assert await billing.get_plan("plan_1") == stored
    assert await billing.get_plan("pro") == stored

    cheaper = pro_plan(
        id="plan_ignored",
        name="Pro (2025)",
        charges=[
            FlatCharge(code="base", description="Platform fee", item_code="BASE", amount=D("79.50"))
        ],
    )
    replaced = await billing.put_plan(cheaper)
    assert replaced.id == "plan_1" and replaced.name == "Pro (2025)"
    assert replaced.charges == cheaper.charges
    assert await billing.list_plans() == [replaced]
    with pytest.raises(NotFound):
        await billing.get_plan("plan_missing")


async def test_invalid_plans_are_refused_and_nothing_is_stored(billing):
    await billing.put_meter(meter())
    bad_tiers = [
        Tier(unit_price=D(1), up_to=D(10)),
        Tier(unit_price=D(1), up_to=D(5)),
        Tier(unit_price=D(1)),
    ]
    cases = {
        "ISO 4217": pro_plan(currency="XYZ"),
        "greater than": pro_plan(
            charges=[
                GraduatedCharge(
                    code="c",
                    description="C",
                    item_code="I",
                    meter_code="api_calls",
                    tiers=bad_tiers,
                )
            ]
        ),
        "non-negative": pro_plan(
            charges=[FlatCharge(code="c", description="C", item_code="I", amount=D(-1))]
        ),
    }
    for fragment, plan in cases.items():
        # tier order is a rule across fields (422); the others break the wire contract (400)
        expected = BusinessRuleViolation if fragment == "greater than" else InvalidRequest
        with pytest.raises(expected) as caught:
            await billing.put_plan(plan)
        assert fragment in caught.value.detail
    ghost = pro_plan(
        charges=[
            PerUnitCharge(
                code="c", description="C", item_code="I", meter_code="ghost", unit_price=D(1)
            )
        ]
    )
    with pytest.raises(NotFound, match="ghost"):  # like any missing referenced resource
        await billing.put_plan(ghost)
    assert await billing.list_plans() == []


async def test_rating_through_the_port(billing):
    await billing.put_meter(meter())
    await billing.put_plan(pro_plan())
    service = {"service_start": date(2024, 4, 21), "service_end": date(2024, 5, 1)}
    lines = await billing.rate(
        RatingRequest(plan_id="pro", **APRIL, **service, quantities={"api_calls": D(250)})
    )
    # 100 x 0.10 + 150 x 0.08 + 5 = 27.00; 100 x 10/30 = 33.33; minimum 50 x 10/30 = 16.67 met
    assert [(c.charge_code, c.amount) for c in lines] == [
        ("calls", D("27.00")),
        ("base", D("33.33")),
    ]
    assert {(c.period_start, c.period_end) for c in lines} == {
        (date(2024, 4, 21), date(2024, 5, 1))
    }
    lines = await billing.rate(
        RatingRequest(
            plan_id="plan_1", **APRIL, service_start=date(2024, 4, 1), service_end=date(2024, 5, 1)
        )
    )
    assert [(c.kind, c.amount) for c in lines] == [
        ("usage", D("0.00")),
        ("recurring", D("100.00")),
        ("minimum", D("50.00")),
    ]
    with pytest.raises(NotFound):
        await billing.rate(
            RatingRequest(
                plan_id="nope",
                **APRIL,
                service_start=date(2024, 4, 1),
                service_end=date(2024, 5, 1),
            )
        )
    with pytest.raises(BusinessRuleViolation):
        await billing.rate(
            RatingRequest(
                plan_id="pro", **APRIL, service_start=date(2024, 3, 1), service_end=date(2024, 5, 1)
            )
        )


# --- tax -----------------------------------------------------------------------------


def tax_request(**overrides) -> TaxRequest:
    fields = {
        "seller_country": "DE",
        "customer_country": "DE",
        "currency": "EUR",
        "lines": [TaxableLine("il_1", "API", D("27.00")), TaxableLine("il_2", "BASE", D("33.33"))],
    } | overrides
    return TaxRequest(**fields)


async def test_tax_quotes_are_logged_with_the_correlation_id(tax, sessions):
    token = correlation.use("corr-tax-1")
    try:
        lines = await tax.quote(tax_request())
    finally:
        correlation.reset(token)
    assert [(t.rate, t.amount, t.kind) for t in lines] == [
        (D("0.19"), D("5.13"), "domestic"),  # 27.00 x 0.19
        (D("0.19"), D("6.33"), "domestic"),  # 33.33 x 0.19 = 6.3327
    ]
    async with sessions() as s:
        rows = (await s.execute(sa.select(quotes))).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.correlation_id == "corr-tax-1"
    assert row.id.startswith("txq_")
    assert row.request["lines"][1] == {"reference": "il_2", "item_code": "BASE", "amount": "33.33"}
    assert [line["amount"] for line in row.response] == ["5.13", "6.33"]


async def test_refused_quotes_are_not_logged(tax, sessions):
    with pytest.raises(BusinessRuleViolation):
        await tax.quote(tax_request(seller_country="US", customer_country="US", currency="USD"))
    async with sessions() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(quotes))).scalar() == 0


# --- System API routes ---------------------------------------------------------------


async def test_billing_routes_round_trip(client):
    base = "/system/billing/v1"
    body = {"name": "API calls", "event_type": "api.call", "aggregation": "count"}
    created = await client.put(f"{base}/meters/api_calls", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["id"].startswith("mtr_")
    again = await client.put(f"{base}/meters/api_calls", json=body | {"name": "Calls"})
    assert again.json()["id"] == created.json()["id"]
    assert (await client.get(f"{base}/meters/api_calls")).json()["name"] == "Calls"
    summed = await client.put(
        f"{base}/meters/bytes",
        json={
            "name": "Bytes",
            "event_type": "api.call",
            "aggregation": "sum",
            "field": "bytes",
        },
    )
    assert (summed.json()["aggregation"], summed.json()["field"]) == ("sum", "bytes")
    listed = (await client.get(f"{base}/meters", params={"event_type": "api.call"})).json()
    assert (listed["object"], listed["has_more"], len(listed["data"])) == ("list", False, 2)
    first = (await client.get(f"{base}/meters", params={"limit": 1})).json()
    assert (len(first["data"]), first["has_more"]) == (1, True)

    plan = {
        "name": "Pro",
        "currency": "EUR",
        "charges": [
            {
                "model": "graduated",
                "code": "calls",
                "description": "API calls",
                "item_code": "API",
                "meter_code": "api_calls",
                "tiers": [
                    {"unit_price": "0.10", "up_to": "100"},
                    {"unit_price": "0.08", "flat_fee": "5"},
                ],
            },
            {
                "model": "flat",
                "code": "base",
                "description": "Platform fee",
                "item_code": "BASE",
                "amount": "100",
            },
        ],
    }
    put = await client.put(f"{base}/plans/pro", json=plan)
    assert put.status_code == 200, put.text
    plan_id = put.json()["id"]
    got = await client.get(f"{base}/plans/{plan_id}")
    assert got.json()["charges"][0]["tiers"][1] == {
        "unit_price": "0.08",
        "up_to": None,
        "flat_fee": "5",
    }
    assert (await client.get(f"{base}/plans")).json()["data"][0]["id"] == plan_id

    rated = await client.post(
        f"{base}/rate",
        json={
            "plan_id": "pro",
            "period_start": "2024-04-01",
            "period_end": "2024-05-01",
            "service_start": "2024-04-01",
            "service_end": "2024-05-01",
            "quantities": {"api_calls": "250"},
        },
    )
    assert rated.status_code == 200, rated.text
    assert [(c["charge_code"], c["amount"]) for c in rated.json()["data"]] == [
        ("calls", "27.00"),
        ("base", "100.00"),
    ]


def one_charge_plan(model: str, currency: str = "EUR", **fields) -> dict:
    """A plan document with one charge of ``model``, as the plans route takes it:
    ``fields`` are what the case is about; the charge's code, description and item code
    are placeholders."""
    charge = {"model": model, "code": "c", "description": "C", "item_code": "I"} | fields
    return {"name": "Pro", "currency": currency, "charges": [charge]}


async def test_billing_routes_answer_problems(client):
    base = "/system/billing/v1"
    missing = await client.get(f"{base}/plans/nope")
    assert_problem(missing, 404, "not_found")

    negative = await client.put(f"{base}/plans/pro", json=one_charge_plan("flat", amount="-1"))
    assert_problem(negative, 400, "validation_failed")

    unknown_meter = await client.put(
        f"{base}/plans/pro",
        json=one_charge_plan("per_unit", meter_code="ghost", unit_price="1"),
    )
    assert unknown_meter.status_code == 404
    assert "ghost" in unknown_meter.json()["detail"]

    backwards_tiers = await client.put(
        f"{base}/plans/pro",
        json=one_charge_plan(
            "volume",
            meter_code="api_calls",
            tiers=[{"unit_price": "1"}, {"unit_price": "1", "up_to": "5"}],
        ),
    )
    assert backwards_tiers.status_code == 422
    assert backwards_tiers.json()["code"] == "business_rule_violation"
    assert "open-ended" in backwards_tiers.json()["detail"]

    sum_without_field = await client.put(
        f"{base}/meters/bytes",
        json={"name": "Bytes", "event_type": "api.call", "aggregation": "sum"},
    )
    assert sum_without_field.status_code == 400
    assert sum_without_field.json()["code"] == "validation_failed"

    unknown_currency = await client.put(
        f"{base}/plans/pro", json=one_charge_plan("flat", currency="XYZ", amount="1")
    )
    assert unknown_currency.json()["code"] == "validation_failed"


async def test_tax_routes_quote_and_check_vat_numbers(client):
    quoted = await client.post(
        "/system/tax/v1/quotes",
        json={
            "seller_country": "FR",
            "customer_country": "DE",
            "currency": "EUR",
            "customer_tax_id": "DE136695976",
            "lines": [{"reference": "il_1", "item_code": "API", "amount": "100.00"}],
        },
    )
    assert quoted.status_code == 200, quoted.text
    [line] = quoted.json()["data"]
    assert (line["kind"], line["rate"], line["amount"]) == ("reverse_charge", "0", "0.00")

    check = (await client.get("/system/tax/v1/vat-numbers/DE136695976")).json()
    assert check == {
        "vat_id": "DE136695976",
        "valid": True,
        "country": "DE",
        "normalized": "DE136695976",
    }
    assert not (await client.get("/system/tax/v1/vat-numbers/DE136695977")).json()["valid"]

    refused = await client.post(
        "/system/tax/v1/quotes",
        json={
            "seller_country": "US",
            "customer_country": "US",
            "currency": "USD",
            "lines": [{"reference": "il_1", "item_code": "API", "amount": "1"}],
        },
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "business_rule_violation"


# --- HTTP adapters against the routes --------------------------------------------------


async def test_http_adapters_behave_like_the_reference(app, tax):
    async with (
        remote_system("billing", app) as remote_billing,
        remote_system("tax", app) as remote_tax,
    ):
        http_billing, http_tax = HttpBilling(remote_billing), HttpTax(remote_tax)
        stored_meter = await http_billing.put_meter(meter())
        assert stored_meter.code == "api_calls" and stored_meter.id.startswith("mtr_")
        assert await http_billing.list_meters() == [stored_meter]
        assert await http_billing.meters_for_event_types(["api.call", "nope"]) == {
            "api.call": [stored_meter]
        }
        plan = await http_billing.put_plan(pro_plan())
        assert plan.charges == pro_plan().charges
        assert await http_billing.get_plan("pro") == plan
        assert await http_billing.list_plans() == [plan]
        lines = await http_billing.rate(
            RatingRequest(
                plan_id=plan.id,
                **APRIL,
                service_start=date(2024, 4, 1),
                service_end=date(2024, 5, 1),
                quantities={"api_calls": D("1E+3")},
            )
        )
        assert [c.amount for c in lines] == [D("87.00"), D("100.00")]  # 10 + 72 + 5
        with pytest.raises(NotFound):
            await http_billing.get_meter("ghost")
        with pytest.raises(NotFound):
            await http_billing.get_plan("no such plan")  # not even addressable
        with pytest.raises(InvalidRequest):
            await http_billing.put_plan(pro_plan(currency="XYZ"))
        with pytest.raises(BusinessRuleViolation):
            await http_billing.rate(
                RatingRequest(
                    plan_id="pro",
                    **APRIL,
                    service_start=date(2024, 5, 1),
                    service_end=date(2024, 4, 1),
                )
            )

        taxed = await http_tax.quote(tax_request())
        assert taxed == await tax.quote(tax_request())
        check = await http_tax.validate_vat("DE 136 695 976")
        assert (check.vat_id, check.valid, check.normalized) == (
            "DE 136 695 976",
            True,
            "DE136695976",
        )
        assert not (await http_tax.validate_vat("not/a vat")).valid
