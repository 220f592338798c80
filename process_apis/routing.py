"""HTTP helpers of the Process API routes: the Idempotency-Key header and replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.params import Dependency, Parameter

from canonical import errors
from process_apis.idempotency import IdempotencyStore, StoredResponse, fingerprint, run_idempotent

__all__ = [
    "Idempotency",
    "IdempotencyKey",
    "RequiredIdempotencyKey",
    "client_id_of",
    "respond_idempotently",
]

# The store is a Protocol: Litestar must not isinstance-check the injected value.
Idempotency = Annotated[IdempotencyStore, Dependency(skip_validation=True)]

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        description="Unique key for safely retrying this request; replays the first response.",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        required=False,
    ),
]
# Documented as required; the type stays optional so that a missing key reaches the handler
# (``respond_idempotently(required=True)``) and answers ``idempotency_key_required``.
RequiredIdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        description="Unique key for safely retrying this request (required); replays the "
        "first response.",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        required=True,
    ),
]


def client_id_of(request: Request) -> str:
    """The OAuth client behind the request: idempotency keys are scoped per client."""
    principal = request.scope.get("auth")
    return getattr(principal, "client_id", None) or "anonymous"


async def respond_idempotently(
    request: Request,
    store: IdempotencyStore,
    key: str | None,
    produce: Callable[[], Awaitable[tuple[int, Any]]],
    *,
    required: bool,
) -> Response:
    """Run ``produce`` (returning status and body) under ``key``, or replay its answer."""
    if key is None:
        if required:
            raise errors.IdempotencyKeyRequired(
                "this operation requires an Idempotency-Key header (a unique value per "
                "logical request, reused on retries)"
            )
        status, body = await produce()
        return Response(content=body, status_code=status)

    async def stored() -> StoredResponse:
        status, body = await produce()
        return StoredResponse(status, "application/json", msgspec.json.encode(body))

    body = await request.body()
    response, replayed = await run_idempotent(
        store,
        client_id_of(request),
        key,
        fingerprint(request.method, request.url.path, request.url.query or "", body),
        stored,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(
        content=response.body,
        status_code=response.status_code,
        media_type=response.content_type,
        headers=headers,
    )
