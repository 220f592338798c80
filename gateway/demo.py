"""Demo data for the embedded default: two selling legal entities, ERP items, meters,
two price plans, four customers with subscriptions, and this month's usage so far.

Every write is an upsert, so seeding twice leaves the same data."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import msgspec

from canonical.model import (
    Customer,
    ErpItem,
    FlatCharge,
    GraduatedCharge,
    LegalEntity,
    Meter,
    MinimumCommitment,
    PackageCharge,
    PerUnitCharge,
    PricePlan,
    Subscription,
    Tier,
    VolumeCharge,
)
from canonical.time import Period, utcnow
from gateway.auth.clients import IssuedCredentials
from gateway.wiring import Container
from process_apis.usage.formats import ReceivedEvent

__all__ = ["seed"]

D = Decimal

LEGAL_ENTITIES = [
    LegalEntity(
        id="le_de", name="Meterline Europe GmbH", country="DE", currency="EUR", vat_id="DE136695976"
    ),
    LegalEntity(id="le_us", name="Meterline Inc.", country="US", currency="USD", us_state="CA"),
]

ITEMS = [
    ErpItem(code="api-calls", name="API calls", revenue_account="4000"),
    ErpItem(code="tokens", name="Model tokens", revenue_account="4010"),
    ErpItem(code="storage", name="Storage", revenue_account="4020"),
    ErpItem(code="seats", name="Active users", revenue_account="4030"),
    ErpItem(code="platform", name="Platform fee", revenue_account="4100"),
    ErpItem(code="commitment", name="Minimum commitment true-up", revenue_account="4200"),
]

METERS = [
    Meter(
        id="mtr_api_calls",
        code="api_calls",
        name="API calls",
        event_type="api.request",
        aggregation="count",
        unit="call",
    ),
    Meter(
        id="mtr_tokens",
        code="tokens",
        name="Model tokens",
        event_type="llm.tokens",
        aggregation="sum",
        field="tokens",
        unit="token",
    ),
    Meter(
        id="mtr_storage",
        code="storage_gb",
        name="Peak storage",
        event_type="storage.snapshot",
        aggregation="max",
        field="gb",
        unit="GB",
    ),
    Meter(
        id="mtr_users",
        code="active_users",
        name="Active users",
        event_type="user.active",
        aggregation="unique_count",
        field="user_id",
        unit="user",
    ),
]

PLANS = [
    PricePlan(
        id="plan_starter_eur",
        code="starter-eur",
        name="Starter (EUR)",
        currency="EUR",
        charges=[
            FlatCharge(
                code="platform", description="Platform fee", item_code="platform", amount=D("49.00")
            ),
            PerUnitCharge(
                code="api",
                description="API calls",
                item_code="api-calls",
                meter_code="api_calls",
                unit_price=D("0.002"),
            ),
            PackageCharge(
                code="tokens",
                description="Model tokens (per 1,000)",
                item_code="tokens",
                meter_code="tokens",
                package_size=D(1000),
                package_price=D("0.50"),
            ),
        ],
    ),
    PricePlan(
        id="plan_scale_usd",
        code="scale-usd",
        name="Scale (USD)",
        currency="USD",
        charges=[
            FlatCharge(
                code="platform",
                description="Platform fee",
                item_code="platform",
                amount=D("500.00"),
            ),
            GraduatedCharge(
                code="api",
                description="API calls",
                item_code="api-calls",
                meter_code="api_calls",
                tiers=[
                    Tier(up_to=D(1000), unit_price=D("0.01")),
                    Tier(up_to=D(10000), unit_price=D("0.008"), flat_fee=D(5)),
                    Tier(unit_price=D("0.005")),
                ],
            ),
            VolumeCharge(
                code="storage",
                description="Peak storage",
                item_code="storage",
                meter_code="storage_gb",
                tiers=[
                    Tier(up_to=D(100), unit_price=D("0.25")),
                    Tier(up_to=D(1000), unit_price=D("0.20")),
                    Tier(unit_price=D("0.15")),
                ],
            ),
            PerUnitCharge(
                code="seats",
                description="Active users",
                item_code="seats",
                meter_code="active_users",
                unit_price=D("4.00"),
            ),
            MinimumCommitment(
                code="minimum",
                description="Monthly minimum commitment",
                item_code="commitment",
                amount=D("1000.00"),
            ),
        ],
    ),
]

CUSTOMERS = [
    Customer(
        id="cus_acme",
        name="Acme Analytics GmbH",
        legal_entity_id="le_de",
        billing_country="DE",
        currency="EUR",
    ),
    Customer(
        id="cus_bistro",
        name="Bistro Numérique SAS",
        legal_entity_id="le_de",
        billing_country="FR",
        currency="EUR",
        tax_id="FR40303265045",
        partner_id="prt_northwind",
    ),
    Customer(
        id="cus_school",
        name="Volkshochschule Nord",
        legal_entity_id="le_de",
        billing_country="DE",
        currency="EUR",
        tax_status="exempt",
        partner_id="prt_northwind",
    ),
    Customer(
        id="cus_globex",
        name="Globex Corporation",
        legal_entity_id="le_us",
        billing_country="US",
        currency="USD",
        us_state="NY",
        partner_id="prt_harbor",
    ),
]

SUBSCRIPTIONS = [
    Subscription(
        id="sub_acme",
        customer_id="cus_acme",
        plan_id="plan_starter_eur",
        start_date=date(2026, 1, 1),
    ),
    Subscription(
        id="sub_bistro",
        customer_id="cus_bistro",
        plan_id="plan_starter_eur",
        start_date=date(2026, 1, 1),
    ),
    Subscription(
        id="sub_school",
        customer_id="cus_school",
        plan_id="plan_starter_eur",
        start_date=date(2026, 1, 1),
    ),
    Subscription(
        id="sub_globex",
        customer_id="cus_globex",
        plan_id="plan_scale_usd",
        start_date=date(2026, 1, 1),
    ),
]


def demo_events(today: date, per_customer: int = 200) -> list[ReceivedEvent]:
    """Deterministic usage for this month so far (seeded RNG: the same every time)."""
    rng = random.Random(42)
    period = Period(today.year, today.month)
    span = max(1, int((utcnow() - period.start).total_seconds()) - 60)
    events = []
    for customer in CUSTOMERS:
        for n in range(per_customer):
            moment = period.start + timedelta(seconds=rng.randrange(span))
            kind = rng.choice(
                ["api.request", "api.request", "llm.tokens", "storage.snapshot", "user.active"]
            )
            props = {
                "api.request": {"path": "/v1/query"},
                "llm.tokens": {"tokens": rng.randrange(100, 5000)},
                "storage.snapshot": {"gb": round(rng.uniform(1, 400), 2)},
                "user.active": {"user_id": f"u{rng.randrange(25)}"},
            }[kind]
            events.append(
                ReceivedEvent(
                    id=f"demo-{customer.id}-{n}",
                    source="demo.seed",
                    event_type=kind,
                    customer_id=customer.id,
                    timestamp=moment,
                    properties=msgspec.Raw(msgspec.json.encode(props)),
                )
            )
    return events


# Demo OAuth clients: (client_id, name, scopes, partner).
DEMO_CLIENTS = [
    (
        "demo-operator",
        "Demo operator (every first-party scope)",
        "usage:write billing:run billing:read finance:read finance:write portal:read "
        "system:read system:write",
        None,
    ),
    ("demo-ingest", "Demo product service (sends usage)", "usage:write", None),
    ("demo-portal", "Demo customer portal", "portal:read", None),
    (
        "demo-partner-northwind",
        "Demo partner Northwind",
        "partner:read portal:read",
        "prt_northwind",
    ),
]


async def seed_clients(container: Container) -> list[IssuedCredentials]:
    """Register the demo clients, or give them new secrets if they exist: secrets are
    never stored in clear, so the only way to show them again is to replace them."""
    issued = []
    for client_id, name, scopes, partner in DEMO_CLIENTS:
        if await container.clients.find(client_id) is None:
            issued.append(
                await container.clients.create(
                    name, scopes.split(), partner_id=partner, client_id=client_id
                )
            )
        else:
            issued.append(await container.clients.reset_secret(client_id))
    return issued


async def seed(container: Container) -> dict[str, int]:
    for entity in LEGAL_ENTITIES:
        await container.erp.put_legal_entity(entity)
    for item in ITEMS:
        await container.erp.put_item(item)
    for meter in METERS:
        await container.billing.put_meter(meter)
    for plan in PLANS:
        await container.billing.put_plan(plan)
    for customer in CUSTOMERS:
        await container.crm.put_customer(customer)
    for subscription in SUBSCRIPTIONS:
        await container.crm.put_subscription(subscription)
    result = await container.usage.ingest(demo_events(utcnow().date()))
    return {
        "customers": len(CUSTOMERS),
        "events_accepted": result.accepted,
        "events_duplicate": result.duplicates,
    }
