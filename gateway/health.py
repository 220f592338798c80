"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, Router, get
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.auth.middleware import PUBLIC
from gateway.problems import problem_response
from process_apis.usage.streams import RedisStreams

__all__ = ["router"]


class Health(msgspec.Struct):
    status: Literal["ok"]
    checks: dict[str, str] = {}


@get("/live", summary="Liveness: the process answers")
async def live() -> Health:
    return Health(status="ok")


@get("/ready", summary="Readiness: the database (and the ingest stream's Redis) answers")
async def ready(
    request: Request, sessions: async_sessionmaker, streams: RedisStreams | None
) -> Response[Health]:
    checks = {"database": "ok"}
    dependency = "database"
    try:
        async with sessions() as session:
            await session.execute(sa.text("select 1"))
        if streams is not None:  # ingest cannot store anything without it
            dependency = "ingest stream (Redis)"
            await streams.commands.ping()
            checks["ingest_stream"] = "ok"
    except Exception as exc:  # readiness reports any failure as 503, it never raises
        return problem_response(
            request, 503, "not_ready", "Not ready", f"{dependency}: {type(exc).__name__}"
        )
    return Response(Health(status="ok", checks=checks))


router = Router(path="/health", route_handlers=[live, ready], tags=["gateway-health"], opt=PUBLIC)
