"""Conditional GETs over HTTP (Litestar): the ``If-None-Match`` parameter, what a cached
view's route declares in its contract, and the answer: 304 when the client's copy is
current, else the body; both with ``ETag`` and ``Cache-Control: private, no-cache``
(per-customer data that clients may keep but must revalidate)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from experience_apis.caching.views import CachedView

__all__ = ["CONDITIONAL", "IfNoneMatch", "conditional"]

CACHE_CONTROL = "private, no-cache"

IfNoneMatch = Annotated[
    str | None,
    Parameter(
        header="If-None-Match",
        required=False,
        max_length=2048,
        description="ETags of copies the client holds: 304 Not Modified when one is current.",
    ),
]

# Keyword arguments of a cached view's route decorator: its 304 and its headers.
CONDITIONAL: dict[str, Any] = {
    "responses": {
        304: ResponseSpec(
            data_container=None,
            description="Not modified: the copy named in If-None-Match is current.",
        )
    },
    # One documented header: Litestar keeps a route's headers in a set, so two would be
    # listed in a different order on every start (and the contract would drift).
    "response_headers": [
        ResponseHeader(
            name="ETag",
            description="Strong entity tag of the representation; send it back in "
            f"If-None-Match. Sent with `Cache-Control: {CACHE_CONTROL}`: keep the copy, "
            "revalidate it before use.",
            required=True,
            documentation_only=True,
        ),
    ],
}


def conditional(view: CachedView, if_none_match: str | None) -> Response[Any]:
    """The answer to a (possibly conditional) GET of ``view``."""
    headers = {"ETag": view.etag, "Cache-Control": CACHE_CONTROL}
    if view.not_modified(if_none_match):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=view.body, media_type="application/json", headers=headers)
