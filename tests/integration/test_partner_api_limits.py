"""The Partner API is its own rate-limit class, ``partner``: stricter than ``read`` by
default, spent once per request, refused with a 429 problem and the RateLimit headers
once spent, and per client, while the same budget limits no other route class."""

from __future__ import annotations

import re

from gateway.settings import Settings
from tests.support.app import gateway_client
from tests.support.auth import bearer
from tests.support.problems import assert_problem

PARTNER = "/experience/partner/v1"
PORTAL = "/experience/portal/v1"
POLICY = re.compile(r'^"(?P<name>\w+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
REMAINING = re.compile(r'^"(?P<name>\w+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def policy(response) -> tuple[str, int, int]:
    match = POLICY.match(response.headers["RateLimit-Policy"])
    assert match, response.headers["RateLimit-Policy"]
    return match["name"], int(match["q"]), int(match["w"])


def remaining(response) -> tuple[str, int]:
    match = REMAINING.match(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return match["name"], int(match["r"])


async def test_partner_routes_are_refused_after_the_partner_budget_other_classes_are_not(
    sqlite_url,
):
    async with gateway_client(
        sqlite_url, authenticated=False, rate_limit_partner="3/minute"
    ) as client:
        c = client.container
        alpha = await bearer(client, c, ["partner:read"], partner_id="prt_alpha")
        beta = await bearer(client, c, ["partner:read"], partner_id="prt_beta")
        first_party = await bearer(client, c, ["portal:read"])

        # Three requests, and three only: the partner class is spent once per request.
        for left in (2, 1, 0):
            allowed = await client.get(f"{PARTNER}/customers", headers=alpha)
            assert allowed.status_code == 200, allowed.text
            assert policy(allowed) == ("partner", 3, 60)
            assert remaining(allowed) == ("partner", left)
        for path in ("/customers", "/customers/cus_a1/usage", "/invoices/inv_x"):
            refused = await client.get(PARTNER + path, headers=alpha)
            assert_problem(refused, 429, "rate_limited")
            assert policy(refused) == ("partner", 3, 60)
            assert remaining(refused) == ("partner", 0)
            assert int(refused.headers["Retry-After"]) >= 1

        # The budget is per client: another partner still has all of its own.
        other = await client.get(f"{PARTNER}/customers", headers=beta)
        assert other.status_code == 200 and remaining(other) == ("partner", 2)

        # The same budget does not limit another route class: a first-party client reads
        # the portal well past three requests on the ``read`` budget.
        for _ in range(6):
            portal = await client.get(f"{PORTAL}/invoices/inv_x", headers=first_party)
            assert portal.status_code == 404, portal.text
            assert policy(portal)[0] == "read"


async def test_the_default_partner_budget_is_stricter_than_the_read_budget(sqlite_url):
    defaults = Settings.from_env({}, database_url=sqlite_url)
    async with gateway_client(
        sqlite_url,
        authenticated=False,
        rate_limit_partner=defaults.rate_limit_partner,
        rate_limit_read=defaults.rate_limit_read,
    ) as client:
        alpha = await bearer(client, client.container, ["partner:read"], partner_id="prt_a")
        first_party = await bearer(client, client.container, ["portal:read"])
        partner = policy(await client.get(f"{PARTNER}/customers", headers=alpha))
        read = policy(await client.get(f"{PORTAL}/invoices/inv_x", headers=first_party))
        assert partner[0] == "partner" and read[0] == "read"
        # Requests per second each budget allows.
        assert partner[1] / partner[2] < read[1] / read[2]
