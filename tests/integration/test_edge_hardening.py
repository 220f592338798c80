"""Edge hardening a browser or a scanner would notice: security headers on every answer,
CORS only for configured portal origins, per-route body limits, content-type checks, and
no OAuth over plain HTTP to a non-loopback issuer."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.app import gateway_client
from tests.support.problems import assert_problem

PORTAL = "https://portal.example"
INVOICES = "/experience/portal/v1/customers/cus_none/invoices"


async def test_every_answer_carries_the_security_headers(sqlite_url):
    async with gateway_client(sqlite_url) as client:
        for response in (
            await client.get("/health/live"),
            await client.get(INVOICES),  # routed, 404 problem
            await client.get("/no/such/route"),  # unrouted 404
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            assert "strict-transport-security" not in response.headers


async def test_hsts_only_when_configured(sqlite_url):
    async with gateway_client(sqlite_url, hsts=True) as client:
        response = await client.get("/health/live")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_cors_allows_configured_portal_origins_only(sqlite_url):
    preflight = {
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    async with gateway_client(sqlite_url, cors_origins=PORTAL) as client:
        allowed = await client.options(INVOICES, headers={"origin": PORTAL, **preflight})
        refused = await client.options(
            INVOICES, headers={"origin": "https://evil.example", **preflight}
        )
        actual = await client.get(INVOICES, headers={"origin": PORTAL})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == PORTAL
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.headers.get("access-control-allow-origin") != "https://evil.example"
    assert actual.headers["access-control-allow-origin"] == PORTAL
    exposed = actual.headers["access-control-expose-headers"].lower()
    assert "ratelimit" in exposed and "x-correlation-id" in exposed


async def test_no_cors_headers_without_configuration(sqlite_url):
    async with gateway_client(sqlite_url) as client:
        response = await client.get(INVOICES, headers={"origin": PORTAL})
    assert "access-control-allow-origin" not in response.headers


async def test_body_limits_are_per_route(sqlite_url):
    async with gateway_client(sqlite_url) as client:
        # The token endpoint takes a few hundred bytes; 9 kB is refused unread.
        token = await client.post(
            "/oauth/token",
            content=b"grant_type=client_credentials&x=" + b"a" * 9_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        # Master data documents stop at 1 MB ...
        document = await client.put(
            "/system/crm/v1/customers/cus_big",
            content=b'{"name":"' + b"x" * 1_100_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        # ... while an ingest batch of the same size is read (and judged on its events).
        batch = await client.post(
            "/process/usage/v1/events",
            content=b'[{"id":"e","source":"s","event_type":"t","customer_id":"c","pad":"'
            + b"x" * 1_100_000
            + b'"}]',
            headers={"content-type": "application/json"},
        )
    assert_problem(token, 413)
    assert_problem(document, 413, "payload_too_large")
    assert batch.status_code != 413
    # Read to the end and judged on its events: the padding is an unknown event field.
    assert_problem(batch, 400, "invalid_events")
    assert "`pad`" in batch.json()["detail"]


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/process/billing/v1/runs", "POST", {"Idempotency-Key": "ct-1"}),
        ("/system/crm/v1/customers/cus_ct", "PUT", {}),
        ("/system/tax/v1/quotes", "POST", {}),
    ],
)
async def test_json_operations_refuse_other_media_types(sqlite_url, path, method, headers):
    async with gateway_client(sqlite_url) as client:
        response = await client.request(
            method,
            path,
            content=b'{"period": "2026-10"}',
            headers={**headers, "content-type": "text/plain"},
        )
        nothing_ran = await client.get("/process/billing/v1/runs")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert nothing_ran.json()["data"] == []


async def test_json_suffix_media_types_are_json(sqlite_url):
    async with gateway_client(sqlite_url) as client:
        response = await client.post(
            "/process/billing/v1/runs",
            content=b'{"period": "2026-10"}',
            headers={"Idempotency-Key": "ct-2", "content-type": "application/vnd.api+json"},
        )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "issuer", ["http://gateway.internal:8000", "ftp://127.0.0.1", "http://10.0.0.5"]
)
def test_oauth_needs_tls_unless_on_loopback(issuer):
    settings = Settings.from_env(
        {}, database_url="sqlite+aiosqlite:///:memory:", oauth_issuer=issuer
    )
    with pytest.raises(ValueError, match="https"):
        create_app(settings)


@pytest.mark.parametrize(
    "issuer", ["https://billing.example.com", "http://localhost:8000", "http://[::1]:8000"]
)
def test_tls_or_loopback_issuers_start(issuer):
    settings = Settings.from_env(
        {}, database_url="sqlite+aiosqlite:///:memory:", oauth_issuer=issuer
    )
    app = create_app(settings)
    # It starts, serves as that issuer, and closes its container on shutdown.
    with TestClient(app) as client:
        metadata = client.get("/.well-known/oauth-authorization-server")
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["issuer"] == issuer
