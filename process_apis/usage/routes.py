"""Process API: usage ingest (``/process/usage/v1``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar import Request, Response, Router, post
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody

from canonical import errors
from canonical.access import requires
from process_apis.routing import Idempotency, IdempotencyKey, respond_idempotently
from process_apis.usage.formats import CloudEvent, IngestEvent, decode_events
from process_apis.usage.service import IngestResult, UsageService

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
WRITE = requires("usage:write")


def _inline(schema: dict) -> dict:
    """msgspec's JSON Schema with its ``$defs`` inlined, for a self-contained request body."""
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref.startswith("#/$defs/"):
                return resolve(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


@dataclass
class IngestOperation(Operation):
    """States the three accepted body formats, which Litestar cannot infer from a raw body.

    A dataclass itself, so that its ``__init__`` calls ``__post_init__`` (``Operation``'s
    does not: it has none)."""

    def __post_init__(self) -> None:
        schemas = {
            "application/json": list[IngestEvent],
            "application/cloudevents+json": CloudEvent,
            "application/cloudevents-batch+json": list[CloudEvent],
        }
        self.request_body = RequestBody(
            required=True,
            description="A batch of usage events (canonical JSON or CloudEvents 1.0).",
            content={
                media: OpenAPIMediaType(schema=_inline(msgspec.json.schema(kind)))
                for media, kind in schemas.items()
            },
        )


@post(
    "/events",
    security=WRITE,
    operation_class=IngestOperation,
    status_code=200,
    summary="Ingest a batch of usage events",
    description=(
        "Accepts canonical JSON arrays or CloudEvents 1.0 (structured or batch). Each event "
        "is identified by (source, id): a resend is reported as a duplicate and never "
        "stored twice. The answer comes after the batch is durably committed."
    ),
)
async def ingest_events(
    request: Request,
    usage: UsageService,
    idempotency: Idempotency,
    max_batch_events: int,
    idempotency_key: IdempotencyKey = None,
) -> Response[IngestResult]:
    body = await request.body()
    events = decode_events(body, request.headers.get("content-type"))
    if len(events) > max_batch_events:
        raise errors.PayloadTooLarge(
            f"{len(events)} events in one batch; the limit is {max_batch_events}"
        )

    async def produce():
        # NUL can only arrive escaped; without the escape no event needs screening.
        return 200, await usage.ingest(events, screen_nul=b"\\u0000" in body)

    return await respond_idempotently(
        request, idempotency, idempotency_key, produce, required=False
    )


router = Router(
    path="/process/usage/v1",
    route_handlers=[ingest_events],
    tags=["process-usage"],
    opt={"rate_limit": "ingest"},
)
