"""The portal's usage of a period and the partner API's list the same meters with the same
quantities, including a meter the period's invoice billed that no plan of the period
charges any more (the plan was edited after the invoice), and drop it again once the
invoice no longer counts; the portal's cached view follows the documents too."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from tests.support.auth import bearer
from tests.support.portal import (
    JAN,
    JANUARY_USAGE,
    PLAN,
    PORTAL,
    portal_client,
    send,
)
from tests.support.seeding import customer, seed

D = Decimal
PARTNER = "/experience/partner/v1"
# The plan without its tokens charge: January's invoice billed tokens under the old one.
CALLS_ONLY = msgspec.structs.replace(
    PLAN, charges=[c for c in PLAN.charges if getattr(c, "meter_code", None) != "tokens"]
)


async def test_portal_and_partner_usage_list_the_meters_the_invoice_billed(database_url):
    async with portal_client(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await c.crm.put_customer(customer("cus_de", name="Kunde GmbH", partner_id="prt_a"))
        await send(client, JANUARY_USAGE)
        await c.billing_runs.run(JAN)  # finalized, not posted: voiding it un-issues it
        [january], _ = await c.invoices.list(customer_id="cus_de")
        assert {line.meter_code for line in january.lines} == {None, "calls", "tokens"}
        await c.billing.put_plan(CALLS_ONLY)
        portal = await bearer(client, c, ["portal:read"], partner_id="prt_a")
        partner = await bearer(client, c, ["partner:read"], partner_id="prt_a")

        async def usage() -> tuple[list[dict], list[dict]]:
            """January's meters as the portal and the partner API show them."""
            params = {"period": str(JAN)}
            shown = await client.get(
                f"{PORTAL}/customers/cus_de/usage", params=params, headers=portal
            )
            listed = await client.get(
                f"{PARTNER}/customers/cus_de/usage", params=params, headers=partner
            )
            assert shown.status_code == listed.status_code == 200, (shown.text, listed.text)
            return shown.json()["meters"], listed.json()["meters"]

        def measured(meters: list[dict], code: str) -> list[tuple]:
            return [(m[code], D(m["quantity"]), m["event_count"]) for m in meters]

        # No plan of January charges tokens now, but its invoice billed them: listed by
        # both, measured alike; the portal keeps its daily series, the partner API says
        # what the invoice billed.
        shown, listed = await usage()
        assert measured(shown, "code") == measured(listed, "meter_code")
        assert measured(shown, "code") == [("calls", 3, 3), ("tokens", 1500, 2)]
        assert [D(m["invoiced_quantity"]) for m in listed] == [3, 1500]
        tokens = shown[1]["daily"]
        assert {d["day"]: D(d["quantity"]) for d in tokens if d["event_count"]} == {
            "2026-01-03": 1000,
            "2026-01-10": 500,
        }

        # Voided before it reached the ERP, the invoice no longer counts: tokens go from
        # both, the portal's cached view included (neither usage nor terms changed).
        await c.lifecycle.void(january.id, "issued in error")
        shown, listed = await usage()
        assert measured(shown, "code") == measured(listed, "meter_code") == [("calls", 3, 3)]
        assert listed[0]["invoiced_quantity"] is None
