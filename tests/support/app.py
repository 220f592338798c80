"""A gateway app on a throwaway database, with an async client in the test's own event
loop (asyncpg connections belong to one loop, so the app must run in it too).

By default the client is authenticated as an operator client holding every first-party
scope (``client.credentials``), and the rate limits are high enough not to interfere;
tests of authentication and rate limiting ask for ``authenticated=False`` or override
the limits."""

from __future__ import annotations

import contextlib

import httpx

from gateway.app import create_app
from gateway.settings import Settings
from gateway.wiring import build_container
from tests.support.auth import OPERATOR_SCOPES, bearer

GENEROUS = "1000000/second"
UNLIMITED = {
    f"rate_limit_{name}": GENEROUS
    for name in (
        "ingest",
        "read",
        "write",
        "billing_run",
        "system",
        "partner",
        "token_ip",
        "token_client",
    )
}


@contextlib.asynccontextmanager
async def gateway_client(
    database_url: str, *, authenticated: bool = True, scopes=OPERATOR_SCOPES, **overrides
):
    settings = Settings.from_env({}, database_url=database_url, **{**UNLIMITED, **overrides})
    container = build_container(settings)
    app = create_app(settings, container)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.container = container
            client.app = app
            if authenticated:
                client.headers.update(await bearer(client, container, scopes))
            yield client
    finally:
        await container.aclose()
