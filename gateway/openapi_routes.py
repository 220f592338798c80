"""The per-API contracts, served: ``GET /openapi/<name>.v1.yaml`` (or ``.json``).

The documents are built from the running app exactly as ``gateway.contracts`` builds the
committed files (the contract tests fail on any difference), so what a client downloads
is the committed contract. Not part of any contract itself (``include_in_schema=False``).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.exceptions import NotFoundException

from gateway.auth.middleware import PUBLIC
from gateway.contracts import build_contracts, render_json, render_yaml

__all__ = ["router"]

_FORMATS = {
    ".v1.yaml": ("application/yaml", render_yaml),
    ".v1.json": ("application/json", render_json),
}


def _documents(app: Litestar) -> dict[str, dict[str, Any]]:
    documents = app.state.get("contracts")
    if documents is None:
        documents = build_contracts(app)
        app.state.contracts = documents
    return documents


@get("/", include_in_schema=False, sync_to_thread=False)
def index(request: Request) -> dict[str, list[str]]:
    """The contract files this gateway serves."""
    names = list(_documents(request.app))
    return {"contracts": [f"/openapi/{name}{suffix}" for name in names for suffix in _FORMATS]}


@get("/{filename:str}", include_in_schema=False, sync_to_thread=False)
def contract(request: Request, filename: str) -> Response[str]:
    for suffix, (media_type, render) in _FORMATS.items():
        if filename.endswith(suffix):
            document = _documents(request.app).get(filename.removesuffix(suffix))
            if document is not None:
                return Response(render(document), media_type=media_type)
    raise NotFoundException(f"no contract {filename!r}; see /openapi/")


router = Router(path="/openapi", route_handlers=[index, contract], opt=PUBLIC)
