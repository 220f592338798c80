"""Process API: exceptions finance must see (``/process/exceptions/v1``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import Parameter

from canonical.access import requires
from canonical.model import Base, ExceptionRecord, Page
from process_apis.exceptions.service import ExceptionService
from process_apis.exceptions.workbench import ExceptionWorkbench
from process_apis.routing import (
    Idempotency,
    RequiredIdempotencyKey,
    client_id_of,
    respond_idempotently,
)
from system_apis.routing import MAX_DOCUMENT_BYTES, Limit, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("billing:read")
ACT = requires("finance:write")

StatusFilter = one_of("open", "resolved")


class ExceptionList(Page):
    data: list[ExceptionRecord]


@get("/", security=READ, summary="List exceptions")
async def list_exceptions(
    exceptions: ExceptionService,
    status: StatusFilter = None,
    kind: Annotated[str | None, Parameter(max_length=64, required=False)] = None,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
) -> ExceptionList:
    page, has_more = await exceptions.list(
        status=status, kind=kind, limit=limit, starting_after=starting_after
    )
    return ExceptionList(data=page, has_more=has_more)


@get("/{exception_id:str}", security=READ, summary="Get an exception")
async def get_exception(exceptions: ExceptionService, exception_id: str) -> ExceptionRecord:
    return await exceptions.get(exception_id)


class Resolution(Base):
    # What finance did about it, for the record (kept with the exception and audited).
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


@post(
    "/{exception_id:str}/retry",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Retry the work that raised an exception (once its cause is fixed)",
)
async def retry_exception(
    request: Request,
    exception_id: str,
    workbench: ExceptionWorkbench,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[ExceptionRecord]:
    async def produce():
        return 200, await workbench.retry(exception_id)

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


@post(
    "/{exception_id:str}/resolve",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Resolve an exception by hand, with a note",
)
async def resolve_exception(
    request: Request,
    exception_id: str,
    data: Resolution,
    workbench: ExceptionWorkbench,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[ExceptionRecord]:
    async def produce():
        resolved = await workbench.resolve(exception_id, by=client_id_of(request), note=data.note)
        return 200, resolved

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/process/exceptions/v1",
    route_handlers=[list_exceptions, get_exception, retry_exception, resolve_exception],
    tags=["process-exceptions"],
)
