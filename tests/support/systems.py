"""A System API on its own: its routes served by a bare Litestar app over the reference
implementations, a test client calling them, and the HTTP adapters' ``RemoteSystem``
talking to the same app in-process."""

from __future__ import annotations

import contextlib

import httpx
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import problems
from system_apis.remote import RemoteSystem


def _constant(value):
    return Provide(lambda: value, sync_to_thread=False)


def system_app(*routers, engine: AsyncEngine, **ports) -> Litestar:
    """``routers`` with each port (``crm=...``, ``erp=...``) injected under its name, the
    gateway's problem handlers, no authentication; the app disposes ``engine`` when it
    shuts down."""
    return Litestar(
        route_handlers=list(routers),
        dependencies={name: _constant(port) for name, port in ports.items()},
        exception_handlers=problems.exception_handlers,
        on_shutdown=[engine.dispose],
    )


@contextlib.asynccontextmanager
async def system_client(app: Litestar, engine: AsyncEngine):
    """An ``AsyncTestClient`` on ``app`` (made by ``system_app`` on ``engine``).

    The client runs the app on an event loop of its own: the engine's pool is emptied
    first so that no connection crosses loops, and the app disposes the connections it
    opened there when it shuts down (asyncpg connections cannot be closed from another
    loop, and would otherwise be left open)."""
    await engine.dispose()
    async with AsyncTestClient(app) as client:
        yield client


@contextlib.asynccontextmanager
async def remote_system(name: str, app: Litestar):
    """The ``RemoteSystem`` an HTTP adapter of System API ``name`` uses, calling ``app``
    in this event loop."""
    remote = RemoteSystem(
        name, f"http://{name}.test/system/{name}/v1", transport=httpx.ASGITransport(app=app)
    )
    try:
        yield remote
    finally:
        await remote.aclose()
