"""A gateway app on a throwaway database, with an async client in the test's own event
loop (asyncpg connections belong to one loop, so the app must run in it too)."""

from __future__ import annotations

import contextlib

import httpx

from gateway.app import create_app
from gateway.settings import Settings
from gateway.wiring import build_container


@contextlib.asynccontextmanager
async def gateway_client(database_url: str, **overrides):
    settings = Settings.from_env({}, database_url=database_url, **overrides)
    container = build_container(settings)
    app = create_app(settings, container)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.container = container
            client.app = app
            yield client
    finally:
        await container.aclose()
