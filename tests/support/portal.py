"""The portal's billing world, whose figures are worked out by hand (never by the code
under test).

The plan below (platform fee 49.00 EUR, 0.01 EUR per API call, 0.0001 EUR per token);
``cus_de`` (Germany, 19 % VAT) and ``cus_fr`` (France, reverse charge), both subscribed
since 2020. Usage of January 2026, sent through the ingest API:

    cus_de  api.request  Jan 3 10:00, Jan 3 11:00, Jan 5 09:00        -> 3 calls
            llm.tokens   Jan 3 12:00 (1000 tokens), Jan 10 08:00 (500) -> 1,500 tokens
    cus_fr  api.request  Jan 7 09:00                                  -> 1 call

December 2025 and January 2026 are billed and posted:

    cus_de  2025-12  49.00 + 0 + 0       = 49.00, VAT 9.31              -> 58.31
            2026-01  49.00 + 0.03 + 0.15 = 49.18, VAT 9.31 + 0.01 + 0.03 -> 58.53
                     (0.03 x 19 % = 0.0057 -> 0.01; 0.15 x 19 % = 0.0285 -> 0.03)
    cus_fr  2025-12  49.00, no VAT (reverse charge)                     -> 49.00
            2026-01  49.00 + 0.01 = 49.01, no VAT                       -> 49.01
"""

from __future__ import annotations

from decimal import Decimal

import httpx

from canonical.model import ErpPaymentIn, FlatCharge, PerUnitCharge, PricePlan
from canonical.time import Period, utcnow
from tests.support import ingest
from tests.support.app import gateway_client
from tests.support.ingest import send
from tests.support.seeding import customer, seed

D = Decimal
PORTAL = "/experience/portal/v1"
DEC, JAN = Period(2025, 12), Period(2026, 1)

PLAN = PricePlan(
    id="plan_portal",
    code="portal",
    name="Portal plan",
    currency="EUR",
    charges=[
        FlatCharge(
            code="platform", description="Platform fee", item_code="platform", amount=D("49.00")
        ),
        PerUnitCharge(
            code="calls",
            description="API calls",
            item_code="calls",
            meter_code="calls",
            unit_price=D("0.01"),
        ),
        PerUnitCharge(
            code="tokens",
            description="Tokens",
            item_code="tokens",
            meter_code="tokens",
            unit_price=D("0.0001"),
        ),
    ],
)


def event(eid: str, customer_id: str, event_type: str, at: str, **properties) -> dict:
    """An event of the world's source."""
    return ingest.event(eid, customer_id, event_type, at, source="portal-test", **properties)


JANUARY_USAGE = [
    event("c1", "cus_de", "api.request", "2026-01-03T10:00:00Z"),
    event("c2", "cus_de", "api.request", "2026-01-03T11:00:00Z"),
    event("c3", "cus_de", "api.request", "2026-01-05T09:00:00Z"),
    event("t1", "cus_de", "llm.tokens", "2026-01-03T12:00:00Z", tokens=1000),
    event("t2", "cus_de", "llm.tokens", "2026-01-10T08:00:00Z", tokens=500),
    event("f1", "cus_fr", "api.request", "2026-01-07T09:00:00Z"),
]


def portal_client(database_url: str, **overrides):
    """A gateway whose ingest takes the world's past usage; no background worker (the
    tests drain the outbox themselves)."""
    return gateway_client(
        database_url, worker_in_process=False, event_max_age_days=3650, **overrides
    )


async def build_world(client: httpx.AsyncClient, *, de_partner: str | None = None) -> dict:
    """The world of the module docstring, billed and posted; returns the invoices by
    (customer, period)."""
    c = client.container
    await seed(c, PLAN)
    if de_partner:
        await c.crm.put_customer(customer("cus_de", name="Kunde GmbH", partner_id=de_partner))
    await send(client, JANUARY_USAGE)
    for period in (DEC, JAN):
        await c.billing_runs.run(period)
    await c.outbox.drain()
    page, _ = await c.invoices.list(limit=50)
    return {
        (i.customer_id, str(Period(i.period_start.year, i.period_start.month))): i for i in page
    }


async def pay(container, invoice, amount: str, ref: str) -> None:
    """Records at the ERP a bank transfer of ``amount`` EUR against ``invoice``."""
    document = invoice.erp_document_id or (await container.invoices.get(invoice.id)).erp_document_id
    await container.erp.record_payment(
        ErpPaymentIn(
            external_ref=ref,
            document_id=document,
            amount=D(amount),
            currency="EUR",
            received_on=utcnow().date(),
            method="bank_transfer",
        )
    )


async def void(client: httpx.AsyncClient, invoice_id: str, key: str) -> dict:
    """Voids ``invoice_id`` through the billing API; returns the voided invoice."""
    response = await client.post(
        f"/process/billing/v1/invoices/{invoice_id}/void",
        json={"reason": "billed in error"},
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 200, response.text
    return response.json()
