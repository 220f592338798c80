"""Scope authorisation at the gateway: a valid token without the route's scope gets 403
``insufficient_scope`` (problem+json and an RFC 6750 challenge naming the scope), on
every route of every layer; the system APIs open only to ``system:*`` scopes."""

from __future__ import annotations

import re

import httpx
from litestar.routes import HTTPRoute

from canonical.access import SCOPES
from gateway.auth.middleware import requirement_of
from tests.support.app import gateway_client
from tests.support.auth import bearer

CUSTOMER = {
    "name": "Scope Test GmbH",
    "legal_entity_id": "le_de",
    "billing_country": "DE",
    "currency": "EUR",
}
NON_SYSTEM_SCOPES = [s for s in SCOPES if not s.startswith("system:")]


def assert_insufficient_scope(response: httpx.Response, scope: str, what: str = "") -> None:
    assert response.status_code == 403, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    body = response.json()
    assert body["code"] == "insufficient_scope" and body["status"] == 403, what
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="meterline"'), what
    assert 'error="insufficient_scope"' in challenge, what
    assert f'scope="{scope}"' in challenge, what


def protected_operations(app):
    """(method, concrete path, alternatives) of every operation that needs a token."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "zz_none", route.path)
        for handler in route.route_handlers:
            needed = requirement_of(handler)
            # The finance page (cookie session, HTML): tests/e2e/test_finance_page_session.py
            if needed is None or handler.opt.get("session_cookie"):
                continue
            for method in sorted(handler.http_methods):
                yield method, path, needed


async def test_every_protected_route_demands_its_scope_and_no_other_suffices(sqlite_url):
    """For each operation: a token holding every scope except the route's is refused
    with 403; a token holding only the route's scope passes the gateway (whatever the
    handler then answers)."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        operations = list(protected_operations(client.app))
        layers = {path.split("/")[1] for _, path, _ in operations}
        assert layers == {"system", "process", "experience"}
        assert len(operations) >= 40

        headers: dict[tuple[str, frozenset[str]], dict[str, str]] = {}

        async def token_for(kind: str, scopes: frozenset[str]) -> dict[str, str]:
            if (kind, scopes) not in headers:
                # The Partner API answers partner clients only (a partner_id claim).
                partner = "prt_scope" if kind == "only" and "partner:read" in scopes else None
                headers[kind, scopes] = await bearer(
                    client, client.container, sorted(scopes), partner_id=partner
                )
            return headers[kind, scopes]

        for method, path, needed in operations:
            demanded = frozenset().union(*needed)
            without = await token_for("without", frozenset(SCOPES) - demanded)
            response = await client.request(method, path, headers=without)
            assert_insufficient_scope(response, " ".join(sorted(needed[0])), f"{method} {path}")

            only = await token_for("only", needed[0])
            response = await client.request(method, path, headers=only)
            assert response.status_code not in (401, 403), f"{method} {path}: {response.text}"
            assert response.status_code < 500, f"{method} {path}: {response.text}"


async def test_system_apis_open_only_to_system_scopes(sqlite_url):
    """Every non-system scope together is not enough to read a system API; system:read
    reads but cannot write; system:write writes."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        container = client.container
        everything_else = await bearer(client, container, NON_SYSTEM_SCOPES)
        reader = await bearer(client, container, ["system:read"])
        writer = await bearer(client, container, ["system:write"])
        path = "/system/crm/v1/customers/cus_scope"

        response = await client.get("/system/crm/v1/customers", headers=everything_else)
        assert_insufficient_scope(response, "system:read")
        response = await client.put(path, json=CUSTOMER, headers=everything_else)
        assert_insufficient_scope(response, "system:write")

        assert (await client.get("/system/crm/v1/customers", headers=reader)).status_code == 200
        response = await client.put(path, json=CUSTOMER, headers=reader)
        assert_insufficient_scope(response, "system:write")

        response = await client.put(path, json=CUSTOMER, headers=writer)
        assert response.status_code == 200, response.text
        response = await client.get(path, headers=writer)
        assert_insufficient_scope(response, "system:read")

        response = await client.get(path, headers=reader)
        assert response.status_code == 200 and response.json()["name"] == CUSTOMER["name"]


async def test_partner_token_reaches_only_the_portal(sqlite_url):
    """A partner client's token (portal:read partner:read) is refused by the system and
    process APIs and admitted by the portal and the Partner API."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        partner = await bearer(
            client, client.container, ["portal:read", "partner:read"], partner_id="prt_x"
        )
        for method, path, scope in [
            ("GET", "/system/crm/v1/customers", "system:read"),
            ("GET", "/process/billing/v1/invoices", "billing:read"),
            ("POST", "/process/usage/v1/events", "usage:write"),
            ("POST", "/process/billing/v1/runs", "billing:run"),
        ]:
            response = await client.request(method, path, headers=partner)
            assert_insufficient_scope(response, scope, f"{method} {path}")
        response = await client.get("/experience/portal/v1/invoices/inv_none", headers=partner)
        assert response.status_code == 404
        response = await client.get("/experience/partner/v1/invoices/inv_none", headers=partner)
        assert response.status_code == 404
