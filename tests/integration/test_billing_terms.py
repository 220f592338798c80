"""Contract terms through a whole billing run: a subscription starting mid-period pays a
prorated flat fee; an amendment mid-period rates each part on the plan then in force,
even in another currency (one invoice per currency); customers of another legal entity
are invoiced by that entity, in its own number series, with its own tax.

Amounts are worked out by hand from the day counts, never by the code under test."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from canonical.model import (
    Amendment,
    FlatCharge,
    LegalEntity,
    MinimumCommitment,
    PerUnitCharge,
    PricePlan,
    Subscription,
)
from canonical.time import Period, utcnow
from tests.support.app import gateway_client
from tests.support.seeding import customer, seed

D = Decimal


def _flat(plan_id: str, currency: str, amount: str) -> PricePlan:
    return PricePlan(
        id=plan_id,
        code=plan_id.removeprefix("plan_"),
        name=plan_id,
        currency=currency,
        charges=[
            FlatCharge(
                code="platform", description="Platform", item_code="platform", amount=D(amount)
            )
        ],
    )


EUR_30 = _flat("plan_eur30", "EUR", "30")
EUR_60 = _flat("plan_eur60", "EUR", "60")
USD_10 = _flat("plan_usd10", "USD", "10")
FRANCE = LegalEntity(
    id="le_fr", name="Vendeur SAS", country="FR", currency="EUR", vat_id="FR40303265045"
)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(D("0.01"), rounding=ROUND_HALF_UP)


async def test_proration_amendments_currencies_and_legal_entities(database_url):
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))  # last month
    days = D(period.days)
    day = period.first_day
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, EUR_30)
        for plan in (EUR_60, USD_10):
            await c.billing.put_plan(plan)
        await c.erp.put_legal_entity(FRANCE)
        subscriptions = [
            # Starts on the 11th: 10 days of the period are not served.
            Subscription(
                id="sub_late",
                customer_id="cus_late",
                plan_id=EUR_30.id,
                start_date=day + timedelta(10),
            ),
            # EUR 30 for 15 days, then EUR 60.
            Subscription(
                id="sub_up",
                customer_id="cus_up",
                plan_id=EUR_30.id,
                start_date=date(2020, 1, 1),
                amendments=[Amendment(effective_from=day + timedelta(15), plan_id=EUR_60.id)],
            ),
            # EUR 30 for 15 days, then USD 10: two invoices, one per currency.
            Subscription(
                id="sub_usd",
                customer_id="cus_usd",
                plan_id=EUR_30.id,
                start_date=date(2020, 1, 1),
                amendments=[Amendment(effective_from=day + timedelta(15), plan_id=USD_10.id)],
            ),
            # Ends after the 20th.
            Subscription(
                id="sub_gone",
                customer_id="cus_gone",
                plan_id=EUR_30.id,
                start_date=date(2020, 1, 1),
                end_date=day + timedelta(20),
            ),
            # A customer of the French entity, whole month.
            Subscription(
                id="sub_fr", customer_id="cus_paris", plan_id=EUR_30.id, start_date=date(2020, 1, 1)
            ),
        ]
        for subscription in subscriptions:
            if subscription.customer_id == "cus_paris":
                await c.crm.put_customer(
                    customer("cus_paris", legal_entity_id="le_fr", billing_country="FR")
                )
            else:
                await c.crm.put_customer(customer(subscription.customer_id))
            await c.crm.put_subscription(subscription)

        run = await c.billing_runs.run(period)
        assert run.status == "completed" and run.counts.held == 0
        page, _ = await c.invoices.list(limit=100)
        invoices = {(i.subscription_id, i.currency): i for i in page}

        def platform(subscription_id: str, currency: str = "EUR") -> list[Decimal]:
            invoice = invoices[subscription_id, currency]
            return [line.amount for line in invoice.lines]

        assert platform("sub_late") == [cents(D(30) * (days - 10) / days)]
        assert platform("sub_up") == [
            cents(D(30) * 15 / days),
            cents(D(60) * (days - 15) / days),
        ]
        assert platform("sub_usd", "EUR") == [cents(D(30) * 15 / days)]
        assert platform("sub_usd", "USD") == [cents(D(10) * (days - 15) / days)]
        assert platform("sub_gone") == [cents(D(30) * 20 / days)]
        assert platform("sub_fr") == [D("30.00")]
        # The seed's own customers (cus_de, cus_fr) are billed a full month each.
        assert platform("sub_cus_de") == [D("30.00")]

        french = invoices["sub_fr", "EUR"]
        assert french.legal_entity_id == "le_fr" and french.number.startswith("INV-FR-")
        assert french.lines[0].tax.amount == D("6.00")  # French VAT, 20 %
        german = invoices["sub_late", "EUR"]
        assert german.legal_entity_id == "le_de" and german.number.startswith("INV-DE-")
        assert german.lines[0].tax.amount == cents(german.lines[0].amount * D("0.19"))
        usd = invoices["sub_usd", "USD"]
        assert usd.tax_total == cents(usd.subtotal * D("0.19"))
        assert usd.total == usd.subtotal + usd.tax_total


def _committed(plan_id: str, minimum: str) -> PricePlan:
    return PricePlan(
        id=plan_id,
        code=plan_id.removeprefix("plan_"),
        name=plan_id,
        currency="EUR",
        charges=[
            PerUnitCharge(
                code="calls",
                description="Calls",
                item_code="calls",
                meter_code="calls",
                unit_price=D("0.20"),
            ),
            MinimumCommitment(
                code="minimum", description="Minimum", item_code="minimum", amount=D(minimum)
            ),
        ],
    )


async def test_a_minimum_commitment_amended_mid_period(database_url):
    """Each part of the period meets its own plan's minimum, prorated by its days: 50
    calls (10.00) before the amendment against a 30.00 minimum, 100 calls (20.00) after
    it against 60.00: both fall short in a month of any length."""
    period = Period.containing(utcnow().replace(day=1) - timedelta(days=1))  # last month
    days, day = D(period.days), period.first_day
    small, large = _committed("plan_min30", "30"), _committed("plan_min60", "60")
    async with gateway_client(
        database_url, worker_in_process=False, event_max_age_days=70
    ) as client:
        c = client.container
        await seed(c, small)
        await c.billing.put_plan(large)
        await c.crm.put_subscription(
            Subscription(
                id="sub_cus_de",
                customer_id="cus_de",
                plan_id=small.id,
                start_date=date(2020, 1, 1),
                amendments=[Amendment(effective_from=day + timedelta(15), plan_id=large.id)],
            )
        )
        events = [
            {
                "id": f"c{i}",
                "source": "terms",
                "event_type": "api.request",
                "customer_id": "cus_de",
                "timestamp": f"{day + timedelta(2 if i < 50 else 20)}T10:{i % 60:02d}:00Z",
            }
            for i in range(150)
        ]
        sent = await client.post("/process/usage/v1/events", json=events)
        assert sent.json()["accepted"] == 150, sent.text

        run = await c.billing_runs.run(period, ["cus_de"])
        assert run.status == "completed" and run.counts.invoiced == 1
        [invoice] = (await c.invoices.list(customer_id="cus_de", limit=10))[0]
        before = cents(D(30) * 15 / days - D("10.00"))
        after = cents(D(60) * (days - 15) / days - D("20.00"))
        assert [(line.kind, line.amount) for line in invoice.lines] == [
            ("usage", D("10.00")),
            ("minimum", before),
            ("usage", D("20.00")),
            ("minimum", after),
        ]
        assert invoice.subtotal == D("30.00") + before + after
        assert invoice.tax_total == sum(
            (cents(x * D("0.19")) for x in (D("10.00"), before, D("20.00"), after)), D(0)
        )
