"""The reference CRM against SQLite and PostgreSQL, and its System API routes."""

from __future__ import annotations

from datetime import date

import pytest

from canonical.errors import BusinessRuleViolation, Conflict, InvalidRequest, NotFound
from canonical.model import Amendment, Subscription
from system_apis.crm.http import HttpCrm
from system_apis.crm.reference import ReferenceCrm
from system_apis.crm.routes import router
from tests.support.problems import assert_problem
from tests.support.seeding import customer
from tests.support.systems import remote_system, system_app, system_client


@pytest.fixture
def crm(sessions):
    return ReferenceCrm(sessions)


def subscription(
    sid: str, start: date, end: date | None = None, customer_id="cus_a", **overrides
) -> Subscription:
    return Subscription(
        id=sid,
        customer_id=customer_id,
        plan_id="plan_basic",
        start_date=start,
        end_date=end,
        **overrides,
    )


# --- customers ---------------------------------------------------------------------------


async def test_put_customer_inserts_then_updates(crm):
    created = customer("cus_a", tax_id="DE123456789", partner_id="ptn_1")
    assert await crm.put_customer(created) == created
    assert await crm.get_customer("cus_a") == created

    changed = customer("cus_a", name="Renamed GmbH", billing_country="AT", partner_id=None)
    await crm.put_customer(changed)
    assert await crm.get_customer("cus_a") == changed


async def test_get_unknown_customer_is_not_found(crm):
    with pytest.raises(NotFound):
        await crm.get_customer("cus_missing")
    with pytest.raises(NotFound):
        await crm.get_customer("bad\x00id")  # never reaches the database


async def test_parent_must_exist_and_hierarchy_must_stay_acyclic(crm):
    with pytest.raises(NotFound):
        await crm.put_customer(customer("cus_child", parent_id="cus_nobody"))
    await crm.put_customer(customer("cus_root"))
    await crm.put_customer(customer("cus_mid", parent_id="cus_root"))
    await crm.put_customer(customer("cus_leaf", parent_id="cus_mid"))
    with pytest.raises(Conflict) as caught:
        await crm.put_customer(customer("cus_root", parent_id="cus_leaf"))
    assert caught.value.code == "parent_cycle"
    with pytest.raises(Conflict):
        await crm.put_customer(customer("cus_self", parent_id="cus_self"))
    assert (await crm.get_customer("cus_root")).parent_id is None


async def test_list_customers_pages_by_id_and_filters_by_partner(crm):
    for n in range(5):
        await crm.put_customer(customer(f"cus_{n}", partner_id="ptn_x" if n % 2 == 0 else None))

    first, more = await crm.list_customers(limit=2)
    assert [c.id for c in first] == ["cus_0", "cus_1"] and more
    second, more = await crm.list_customers(limit=2, starting_after="cus_1")
    assert [c.id for c in second] == ["cus_2", "cus_3"] and more
    last, more = await crm.list_customers(limit=2, starting_after="cus_3")
    assert [c.id for c in last] == ["cus_4"] and not more

    partner, more = await crm.list_customers(partner_id="ptn_x")
    assert [c.id for c in partner] == ["cus_0", "cus_2", "cus_4"] and not more
    assert await crm.list_customers(partner_id="ptn_unknown") == ([], False)


async def test_known_customer_ids(crm):
    await crm.put_customer(customer("cus_a"))
    await crm.put_customer(customer("cus_b"))
    assert await crm.known_customer_ids(["cus_a", "cus_b", "cus_c", "x\x00"]) == {"cus_a", "cus_b"}
    assert await crm.known_customer_ids([]) == set()
    many = [f"cus_{n}" for n in range(1200)] + ["cus_a"]  # more than one chunk
    assert await crm.known_customer_ids(many) == {"cus_a"}


# --- subscriptions -----------------------------------------------------------------------


async def test_subscription_needs_a_known_customer_and_a_valid_term(crm):
    with pytest.raises(NotFound):
        await crm.put_subscription(subscription("sub_1", date(2025, 1, 1)))
    await crm.put_customer(customer("cus_a"))
    with pytest.raises(BusinessRuleViolation) as caught:
        await crm.put_subscription(subscription("sub_1", date(2025, 1, 1), date(2025, 1, 1)))
    assert caught.value.code == "invalid_term"


async def test_put_subscription_upserts_and_replaces_amendments(crm):
    await crm.put_customer(customer("cus_a"))
    first = subscription(
        "sub_1",
        date(2025, 1, 1),
        amendments=[
            Amendment(date(2025, 6, 1), "plan_pro"),
            Amendment(date(2025, 3, 1), "plan_plus"),
        ],
    )
    stored = await crm.put_subscription(first)
    assert [a.effective_from for a in stored.amendments] == [date(2025, 3, 1), date(2025, 6, 1)]
    assert await crm.get_subscription("sub_1") == stored

    replaced = subscription(
        "sub_1",
        date(2025, 1, 1),
        date(2026, 1, 1),
        amendments=[Amendment(date(2025, 9, 1), "plan_max")],
    )
    await crm.put_subscription(replaced)
    assert await crm.get_subscription("sub_1") == replaced
    assert await crm.list_subscriptions("cus_a") == [replaced]


async def test_add_amendment_keeps_them_sorted_and_refuses_clashes(crm):
    await crm.put_customer(customer("cus_a"))
    await crm.put_subscription(subscription("sub_1", date(2025, 1, 1), date(2026, 1, 1)))
    await crm.add_amendment("sub_1", Amendment(date(2025, 7, 1), "plan_pro"))
    sub = await crm.add_amendment("sub_1", Amendment(date(2025, 4, 1), "plan_plus"))
    assert sub.amendments == [
        Amendment(date(2025, 4, 1), "plan_plus"),
        Amendment(date(2025, 7, 1), "plan_pro"),
    ]
    assert (await crm.get_subscription("sub_1")).amendments == sub.amendments

    with pytest.raises(Conflict):
        await crm.add_amendment("sub_1", Amendment(date(2025, 7, 1), "plan_max"))
    with pytest.raises(BusinessRuleViolation) as caught:
        await crm.add_amendment("sub_1", Amendment(date(2026, 1, 1), "plan_max"))  # end excl.
    assert caught.value.code == "amendment_outside_term"
    with pytest.raises(NotFound):
        await crm.add_amendment("sub_nope", Amendment(date(2025, 7, 1), "plan_max"))


async def test_active_between_respects_half_open_boundaries(crm):
    await crm.put_customer(customer("cus_a"))
    await crm.put_customer(customer("cus_b"))
    subs = [
        subscription("sub_1_ends_at_start", date(2024, 1, 1), date(2025, 3, 1)),
        subscription("sub_2_ends_day_after", date(2024, 1, 1), date(2025, 3, 2)),
        subscription("sub_3_starts_at_end", date(2025, 4, 1)),
        subscription("sub_4_starts_day_before_end", date(2025, 3, 31), customer_id="cus_b"),
        subscription(
            "sub_5_open_ended",
            date(2020, 1, 1),
            amendments=[Amendment(date(2025, 3, 15), "plan_pro")],
        ),
        subscription("sub_6_inside", date(2025, 3, 10), date(2025, 3, 20), customer_id="cus_b"),
    ]
    for sub in subs:
        await crm.put_subscription(sub)

    march = await crm.subscriptions_active_between(date(2025, 3, 1), date(2025, 4, 1))
    assert [s.id for s in march] == [
        "sub_2_ends_day_after",
        "sub_4_starts_day_before_end",
        "sub_5_open_ended",
        "sub_6_inside",
    ]
    assert march[2].amendments == [Amendment(date(2025, 3, 15), "plan_pro")]

    only_b = await crm.subscriptions_active_between(date(2025, 3, 1), date(2025, 4, 1), ["cus_b"])
    assert [s.id for s in only_b] == ["sub_4_starts_day_before_end", "sub_6_inside"]
    assert await crm.subscriptions_active_between(date(2025, 3, 1), date(2025, 4, 1), []) == []

    page, more = await crm.active_subscriptions_page(date(2025, 3, 1), date(2025, 4, 1), limit=3)
    assert [s.id for s in page] == [s.id for s in march[:3]] and more
    page, more = await crm.active_subscriptions_page(
        date(2025, 3, 1), date(2025, 4, 1), limit=3, starting_after=page[-1].id
    )
    assert [s.id for s in page] == ["sub_6_inside"] and not more


# --- routes ------------------------------------------------------------------------------


@pytest.fixture
def app(crm, engine):
    return system_app(router, engine=engine, crm=crm)


@pytest.fixture
async def client(app, engine):
    async with system_client(app, engine) as client:
        yield client


BODY = {
    "name": "Acme GmbH",
    "legal_entity_id": "le_de",
    "billing_country": "DE",
    "currency": "EUR",
    "tax_id": "DE123456789",
}


async def test_route_create_get_round_trip(client):
    created = await client.post("/system/crm/v1/customers", json=BODY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("cus_") and body["name"] == "Acme GmbH"
    fetched = await client.get(f"/system/crm/v1/customers/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body

    put = await client.put("/system/crm/v1/customers/acme-42", json=BODY | {"partner_id": "ptn_1"})
    assert put.status_code == 200 and put.json()["id"] == "acme-42"

    sub = await client.post(
        "/system/crm/v1/subscriptions",
        json={"customer_id": "acme-42", "plan_id": "plan_basic", "start_date": "2025-01-01"},
    )
    assert sub.status_code == 201, sub.text
    amended = await client.post(
        f"/system/crm/v1/subscriptions/{sub.json()['id']}/amendments",
        json={"effective_from": "2025-02-01", "plan_id": "plan_pro"},
    )
    assert amended.status_code == 201
    assert amended.json()["amendments"] == [{"effective_from": "2025-02-01", "plan_id": "plan_pro"}]
    active = await client.get(
        "/system/crm/v1/active-subscriptions",
        params={
            "start": "2025-01-01",
            "end": "2025-02-01",
            "customer_id": ["acme-42", "cus_other"],
        },
    )
    assert [s["id"] for s in active.json()["data"]] == [sub.json()["id"]]
    known = await client.post("/system/crm/v1/known-customers", json={"ids": ["acme-42", "zz"]})
    assert known.status_code == 200 and known.json() == {"ids": ["acme-42"]}


async def test_route_list_pagination(client):
    for n in range(3):
        await client.put(f"/system/crm/v1/customers/cus_{n}", json=BODY)
    first = (await client.get("/system/crm/v1/customers", params={"limit": 2})).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [c["id"] for c in first["data"]] == ["cus_0", "cus_1"]
    rest = (
        await client.get("/system/crm/v1/customers", params={"limit": 2, "starting_after": "cus_1"})
    ).json()
    assert [c["id"] for c in rest["data"]] == ["cus_2"] and rest["has_more"] is False


async def test_route_problems(client):
    missing = await client.get("/system/crm/v1/customers/cus_nobody")
    assert_problem(missing, 404, "customer_not_found")

    orphan = await client.post(
        "/system/crm/v1/subscriptions",
        json={"customer_id": "cus_nobody", "plan_id": "plan_basic", "start_date": "2025-01-01"},
    )
    assert orphan.status_code == 404

    await client.put("/system/crm/v1/customers/cus_a", json=BODY)
    bad_term = await client.put(
        "/system/crm/v1/subscriptions/sub_1",
        json={
            "customer_id": "cus_a",
            "plan_id": "plan_basic",
            "start_date": "2025-02-01",
            "end_date": "2025-01-01",
        },
    )
    assert_problem(bad_term, 422, "invalid_term")

    bad_id = await client.put("/system/crm/v1/customers/bad%20id", json=BODY)
    assert bad_id.status_code == 400 and bad_id.json()["code"] == "validation_failed"
    assert (await client.get("/system/crm/v1/customers/bad%20id")).status_code == 404
    cycle = await client.put("/system/crm/v1/customers/cus_a", json=BODY | {"parent_id": "cus_a"})
    assert cycle.status_code == 409 and cycle.json()["code"] == "parent_cycle"
    unknown_currency = await client.put(
        "/system/crm/v1/customers/cus_b", json=BODY | {"currency": "AAA"}
    )
    assert unknown_currency.status_code == 400

    invalid = await client.post("/system/crm/v1/customers", json=BODY | {"billing_country": "de"})
    assert invalid.status_code == 400 and invalid.json()["code"] == "validation_failed"


async def test_http_adapter_speaks_the_same_port(app, crm):
    async with remote_system("crm", app) as remote:
        http = HttpCrm(remote)
        parent = await http.put_customer(customer("cus_parent", partner_id="ptn_1"))
        child = await http.put_customer(customer("cus_child", parent_id="cus_parent"))
        assert await crm.get_customer("cus_child") == child == await http.get_customer("cus_child")
        with pytest.raises(InvalidRequest):  # the id travels escaped, and is refused
            await http.put_customer(customer("cus child?x"))
        with pytest.raises(NotFound):
            await http.get_customer("cus child?x")
        assert await http.list_customers(partner_id="ptn_1") == ([parent], False)
        assert await http.known_customer_ids(["cus_parent", "cus_x"]) == {"cus_parent"}
        sub = subscription(
            "sub_1",
            date(2025, 1, 1),
            customer_id="cus_parent",
            amendments=[Amendment(date(2025, 2, 1), "plan_pro")],
        )
        assert await http.put_subscription(sub) == sub
        amended = await http.add_amendment("sub_1", Amendment(date(2025, 3, 1), "plan_max"))
        assert amended == await crm.get_subscription("sub_1")
        assert await http.list_subscriptions("cus_parent") == [amended]
        active = await http.subscriptions_active_between(date(2025, 1, 1), date(2025, 2, 1))
        assert active == [amended]
        assert (
            await http.subscriptions_active_between(
                date(2025, 1, 1), date(2025, 2, 1), customer_ids=[]
            )
            == []
        )
        with pytest.raises(NotFound):
            await http.get_subscription("sub_missing")
