"""Partner tenancy on the customer portal: a partner token carries ``partner_id`` and
reads only its own customers' invoices; for any other customer or invoice (another
partner's, or one without a partner) it gets exactly the 404 a non-existent id gets, so
it cannot even learn that the id exists."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canonical.ids import new_id
from canonical.model import Invoice, InvoiceLine, TaxLine
from canonical.time import Period, utcnow
from gateway.demo import seed
from process_apis.invoices.store import write_invoice
from tests.support import forge
from tests.support.app import gateway_client
from tests.support.auth import bearer
from tests.support.problems import not_found_shape
from tests.support.seeding import customer

PORTAL = "/experience/portal/v1"
PARTNER_SCOPES = ["portal:read", "partner:read"]


async def test_partners_read_only_their_own_customers_in_the_demo_data(database_url):
    """Demo data billed for this month: Northwind reads Bistro's and the school's invoices;
    Globex (Harbor's) and Acme (no partner) answer like unknown ids, listing and detail
    alike, and nothing of them leaks; Harbor sees the mirror image; a first-party portal
    client sees everyone."""
    async with gateway_client(database_url, authenticated=False) as client:
        container = client.container
        await seed(container)
        run = await container.billing_runs.run(Period.containing(utcnow()), None)
        assert run.counts.invoiced == 4
        page, _ = await container.invoices.list(limit=50)
        invoice_of = {invoice.customer_id: invoice.id for invoice in page}

        northwind = await bearer(client, container, PARTNER_SCOPES, partner_id="prt_northwind")
        harbor = await bearer(client, container, PARTNER_SCOPES, partner_id="prt_harbor")
        first_party = await bearer(client, container, ["portal:read"])
        token = northwind["Authorization"].removeprefix("Bearer ")
        assert forge.decode_segment(token, 1)["partner_id"] == "prt_northwind"

        unknown_customer = await client.get(
            f"{PORTAL}/customers/cus_nobody/invoices", headers=northwind
        )
        unknown_invoice = await client.get(f"{PORTAL}/invoices/inv_nobody", headers=northwind)
        customer_404 = not_found_shape(unknown_customer, "cus_nobody")
        invoice_404 = not_found_shape(unknown_invoice, "inv_nobody")

        visible = {
            "northwind": (northwind, {"cus_bistro", "cus_school"}),
            "harbor": (harbor, {"cus_globex"}),
            "first party": (first_party, set(invoice_of)),
        }
        for who, (headers, own) in visible.items():
            for customer_id, invoice_id in invoice_of.items():
                listing = await client.get(
                    f"{PORTAL}/customers/{customer_id}/invoices", headers=headers
                )
                detail = await client.get(f"{PORTAL}/invoices/{invoice_id}", headers=headers)
                if customer_id in own:
                    assert listing.status_code == 200, (who, customer_id, listing.text)
                    assert [i["id"] for i in listing.json()["data"]] == [invoice_id]
                    assert detail.status_code == 200, (who, invoice_id, detail.text)
                    assert detail.json()["customer"]["id"] == customer_id
                else:
                    assert not_found_shape(listing, customer_id) == customer_404, who
                    assert not_found_shape(detail, invoice_id) == invoice_404, who
                    # Nothing of the other tenant's data: not whose invoice it is, not
                    # which invoices a customer has, no names.
                    assert invoice_id not in listing.text
                    assert customer_id not in detail.text
                    for text in (listing.text, detail.text):
                        assert "Globex" not in text and "Acme" not in text


def finalized_invoice(customer_id: str) -> Invoice:
    invoice_id = new_id("inv")
    amount, tax = Decimal("49.00"), Decimal("9.31")
    return Invoice(
        id=invoice_id,
        number=f"T-{invoice_id}",
        customer_id=customer_id,
        subscription_id=new_id("sub"),
        legal_entity_id="le_de",
        currency="EUR",
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 1),
        status="finalized",
        lines=[
            InvoiceLine(
                id=new_id("il"),
                charge_code="platform",
                kind="recurring",
                description="Platform fee",
                item_code="platform",
                meter_code=None,
                quantity=Decimal(1),
                unit_price=amount,
                amount=amount,
                tax=TaxLine(rate=Decimal("0.19"), amount=tax, jurisdiction="DE", kind="domestic"),
            )
        ],
        subtotal=amount,
        tax_total=tax,
        total=amount + tax,
        run_id=None,
        correlation_id=None,
        erp_document_id=None,
        created_at=utcnow(),
    )


PARTNERS = ["prt_p0", "prt_p1", "prt_p2"]
# Per customer: its partner (or none) and how many invoices it has.
CUSTOMERS = st.lists(
    st.tuples(st.sampled_from([None, *PARTNERS]), st.integers(min_value=0, max_value=2)),
    min_size=1,
    max_size=4,
)
# Who asks about whom: a partner and a customer (index, modulo the customers drawn).
QUESTIONS = st.lists(
    st.tuples(st.sampled_from(PARTNERS), st.integers(min_value=0, max_value=3)),
    min_size=1,
    max_size=6,
)


async def test_a_partner_reads_exactly_its_own_customers_invoices(database_url):
    """Property: for any assignment of customers to partners (or none) and any questions,
    a partner's listing of a customer's invoices and each invoice's detail answer 200 with
    exactly that customer's invoices when the customer is the partner's, and otherwise the
    404 of an unknown id. One database per test, fresh ids per example."""
    loop = asyncio.get_running_loop()
    counter = itertools.count()
    async with gateway_client(database_url, authenticated=False) as client:
        container = client.container
        tokens = {
            partner: await bearer(client, container, PARTNER_SCOPES, partner_id=partner)
            for partner in PARTNERS
        }
        anyone = tokens[PARTNERS[0]]
        customer_404 = not_found_shape(
            await client.get(f"{PORTAL}/customers/cus_nobody/invoices", headers=anyone),
            "cus_nobody",
        )
        invoice_404 = not_found_shape(
            await client.get(f"{PORTAL}/invoices/inv_nobody", headers=anyone), "inv_nobody"
        )

        async def check(customers, questions) -> None:
            example = next(counter)
            owners: dict[str, str | None] = {}
            invoices: dict[str, list[str]] = {}
            for n, (partner, count) in enumerate(customers):
                customer_id = f"cus_t{example}_{n}"
                await container.crm.put_customer(
                    customer(customer_id, name=f"Tenant test {example}/{n}", partner_id=partner)
                )
                owners[customer_id] = partner
                written = [finalized_invoice(customer_id) for _ in range(count)]
                async with container.sessions.begin() as session:
                    for invoice in written:
                        await write_invoice(session, invoice, [None])
                invoices[customer_id] = [invoice.id for invoice in written]

            ids = list(owners)
            for partner, index in questions:
                customer_id = ids[index % len(ids)]
                headers = tokens[partner]
                listing = await client.get(
                    f"{PORTAL}/customers/{customer_id}/invoices", headers=headers
                )
                own = owners[customer_id] == partner
                if own:
                    assert listing.status_code == 200, listing.text
                    assert sorted(i["id"] for i in listing.json()["data"]) == sorted(
                        invoices[customer_id]
                    )
                else:
                    assert not_found_shape(listing, customer_id) == customer_404
                for invoice_id in invoices[customer_id]:
                    detail = await client.get(f"{PORTAL}/invoices/{invoice_id}", headers=headers)
                    if own:
                        assert detail.status_code == 200, detail.text
                        assert detail.json()["customer"]["id"] == customer_id
                    else:
                        assert not_found_shape(detail, invoice_id) == invoice_404

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(customers=CUSTOMERS, questions=QUESTIONS)
        def property_holds(customers, questions) -> None:
            asyncio.run_coroutine_threadsafe(check(customers, questions), loop).result()

        # Hypothesis drives the examples from a worker thread; each runs on this loop,
        # where the app and its database connections live.
        await asyncio.to_thread(property_holds)
