"""A gateway app on a throwaway database, with an async test client."""

from __future__ import annotations

import contextlib

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.wiring import build_container


@contextlib.asynccontextmanager
async def gateway_client(database_url: str, **overrides):
    settings = Settings.from_env({}, database_url=database_url, **overrides)
    container = build_container(settings)
    app = create_app(settings, container)
    async with AsyncTestClient(app=app) as client:
        client.container = container
        yield client
