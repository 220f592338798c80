"""Master data several test modules build on: a customer with the usual defaults, the
German seller and the meters, and a small billing world (the seller, its ERP items, four
meters, two subscribed customers) around a price plan: the one the test itself states
where its prices matter, ``USAGE_PLAN`` where they do not."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

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

# The German legal entity every ``customer`` belongs to by default.
SELLER = LegalEntity(
    id="le_de", name="Seller GmbH", country="DE", currency="EUR", vat_id="DE136695976"
)


def customer(cid: str, **overrides) -> Customer:
    """A customer of the German legal entity billed in EUR; ``overrides`` set any field."""
    fields = {
        "name": f"Customer {cid}",
        "legal_entity_id": "le_de",
        "billing_country": "DE",
        "currency": "EUR",
    } | overrides
    return Customer(id=cid, **fields)


# ERP item code -> revenue account; the item codes the plans of the billing world use.
ITEMS = {
    "platform": "4100",
    "calls": "4000",
    "tokens": "4010",
    "storage": "4020",
    "users": "4030",
    "minimum": "4200",
}

# Counts ``api.request`` events.
CALLS_METER = Meter(
    id="mtr_calls", code="calls", name="Calls", event_type="api.request", aggregation="count"
)

METERS = [
    CALLS_METER,
    Meter(
        id="mtr_tokens",
        code="tokens",
        name="Tokens",
        event_type="llm.tokens",
        aggregation="sum",
        field="tokens",
    ),
    Meter(
        id="mtr_storage",
        code="storage",
        name="Storage",
        event_type="storage.snapshot",
        aggregation="max",
        field="gb",
    ),
    Meter(
        id="mtr_users",
        code="users",
        name="Users",
        event_type="user.active",
        aggregation="unique_count",
        field="user_id",
    ),
]


# A platform fee of 49 EUR and 0.002 EUR per call, for tests that need usage billed but
# check no amounts.
USAGE_PLAN = PricePlan(
    id="plan_usage",
    code="usage",
    name="Usage plan",
    currency="EUR",
    charges=[
        FlatCharge(
            code="platform", description="Platform fee", item_code="platform", amount=Decimal(49)
        ),
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=Decimal("0.002"),
        ),
    ],
)


# A charge of every kind on the four meters: the fee, 0.002 EUR per call, graduated
# tokens, volume-priced storage, users in packages of 5, a minimum of 100 EUR.
EVERY_CHARGE_PLAN = PricePlan(
    id="plan_e2e",
    code="e2e",
    name="E2E plan",
    currency="EUR",
    charges=[
        FlatCharge(
            code="platform",
            description="Platform fee",
            item_code="platform",
            amount=Decimal("49.00"),
        ),
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=Decimal("0.002"),
        ),
        GraduatedCharge(
            code="tokens",
            description="Tokens",
            item_code="tokens",
            meter_code="tokens",
            tiers=[
                Tier(up_to=Decimal(1000), unit_price=Decimal("0.01")),
                Tier(up_to=Decimal(5000), unit_price=Decimal("0.005"), flat_fee=Decimal(2)),
                Tier(unit_price=Decimal("0.001")),
            ],
        ),
        VolumeCharge(
            code="storage",
            description="Storage",
            item_code="storage",
            meter_code="storage",
            tiers=[
                Tier(up_to=Decimal(100), unit_price=Decimal("0.25")),
                Tier(unit_price=Decimal("0.20")),
            ],
        ),
        PackageCharge(
            code="users",
            description="Users (per 5)",
            item_code="users",
            meter_code="users",
            package_size=Decimal(5),
            package_price=Decimal("10.00"),
        ),
        MinimumCommitment(
            code="minimum", description="Minimum", item_code="minimum", amount=Decimal("100.00")
        ),
    ],
)


async def seed(container, plan: PricePlan) -> None:
    """The billing world on ``plan``: ``SELLER`` (``le_de``, VAT DE136695976), the
    ``ITEMS`` and ``METERS``, and customers ``cus_de`` (Kunde GmbH, Germany) and ``cus_fr``
    (Client SAS, France, valid VAT number: reverse charge), each subscribed to ``plan``
    since 2020-01-01 as ``sub_<customer>``."""
    await container.erp.put_legal_entity(SELLER)
    for code, account in ITEMS.items():
        await container.erp.put_item(ErpItem(code=code, name=code, revenue_account=account))
    for meter in METERS:
        await container.billing.put_meter(meter)
    await container.billing.put_plan(plan)
    await container.crm.put_customer(customer("cus_de", name="Kunde GmbH"))
    await container.crm.put_customer(
        customer("cus_fr", name="Client SAS", billing_country="FR", tax_id="FR40303265045")
    )
    for customer_id in ("cus_de", "cus_fr"):
        await container.crm.put_subscription(
            Subscription(
                id=f"sub_{customer_id}",
                customer_id=customer_id,
                plan_id=plan.id,
                start_date=date(2020, 1, 1),
            )
        )


async def seed_many(container, plan: PricePlan, customers: int) -> list[str]:
    """``seed``'s world with ``customers`` customers in all: ``cus_de``, ``cus_fr`` and
    German ones ``cus_m00``, ``cus_m01``, ..., each subscribed to ``plan``. Returns their
    ids."""
    await seed(container, plan)
    ids = ["cus_de", "cus_fr"]
    for i in range(customers - 2):
        customer_id = f"cus_m{i:02d}"
        await container.crm.put_customer(customer(customer_id))
        await container.crm.put_subscription(
            Subscription(
                id=f"sub_m{i:02d}",
                customer_id=customer_id,
                plan_id=plan.id,
                start_date=date(2020, 1, 1),
            )
        )
        ids.append(customer_id)
    return ids


def moments(period: Period, n: int) -> list[str]:
    """``n`` distinct instants (ISO 8601) inside ``period`` (the current one) and not after
    now, evenly spaced."""
    now = utcnow()
    span = (now - period.start) / (n + 1)
    return [(period.start + span * (i + 1)).isoformat() for i in range(n)]
