"""Process API: exceptions finance must see (``/process/exceptions/v1``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from canonical.access import requires
from canonical.model import ExceptionRecord, Page
from process_apis.exceptions.service import ExceptionService
from system_apis.routing import Limit, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("billing:read")

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


router = Router(
    path="/process/exceptions/v1",
    route_handlers=[list_exceptions, get_exception],
    tags=["process-exceptions"],
)
