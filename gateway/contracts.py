"""The committed OpenAPI contracts: one document per API, built from the running app.

``build_contracts(app)`` splits the schema Litestar generates from the routes into one
OpenAPI 3.1 document per API of ``gateway.app.API_ROUTERS`` (``contracts/openapi/
<name>.v1.yaml``): only that API's paths, only the components they reference
(transitively), keys in a fixed order. ``python -m gateway.contracts write`` writes the
files (``make contracts``), ``python -m gateway.contracts check`` exits 1 when they
drifted from the code; the gateway serves the same documents at ``/openapi/<name>.v1.yaml``
and ``.json`` (``gateway/openapi_routes.py``).

Every operation is post-processed so that its documented responses are what the gateway
really answers (ADR 0004, docs/problems.md):

* Every error is ``application/problem+json`` with the shared ``Problem`` schema (the
  shape of ``gateway.problems.Problem``). Litestar's generated error responses (its 400
  "ValidationException", and any a handler states with ``raises=[...]``) are replaced by
  the problem response of their status.
* Every response, success or error, documents the ``X-Correlation-ID`` header.
* The schema of every msgspec Struct (``components/schemas``) is msgspec's own JSON
  Schema of that Struct: exactly what the decoder accepts and the encoder produces.
  Litestar's generated one loses constraints msgspec enforces (``Meta`` on list items
  and dict values, ``forbid_unknown_fields`` as ``additionalProperties: false``...).
* Parameters carried in the URL or a header cannot be JSON ``null``: an optional one is
  ``required: false`` and its schema is that of the value when present.
* ``Idempotency-Key`` is ``required: true`` where the handler requires it (billing runs,
  ...): the route states it with ``Parameter(required=True)`` on an optional type, so the
  handler still receives ``None`` and answers the specific ``idempotency_key_required``
  problem rather than a generic validation one.

The problem statuses added, per operation:

====== ==================================================================================
status when
====== ==================================================================================
400    the operation has a parameter or a request body (``validation_failed``,
       ``malformed_body``, ``invalid_request``...); with an ``Idempotency-Key`` header also
       ``idempotency_key_required``
404    the path has a parameter (the resource does not exist); other operations state a
       404 themselves with ``raises=[NotFoundException]`` (e.g. a lookup by query)
409    POST, PUT, PATCH, DELETE: the write clashes with current state (``conflict``,
       ``idempotency_in_flight``, ``invalid_transition``)
413    the operation has a request body (more bytes, or events, than the stated limits)
415    the operation has a request body (a format it does not take)
422    POST, PUT, PATCH, DELETE: a business rule refuses valid input
       (``business_rule_violation``, ``idempotency_key_reused``, ``period_closed``...);
       a read a rule can refuse states it with ``raises=[RefusedByRule]``
429    every operation behind a rate-limit policy (``rate_limited``, with ``Retry-After``
       and the ``RateLimit`` headers)
500    every operation (``internal_error``; quote the correlation ID)
502    every operation of a System, Process or Experience API: a wrapped system failed
       (``upstream_error``, ``system_unavailable``)
503    every operation of a System, Process or Experience API (``system_throttled``, with
       ``Retry-After``), and readiness (``not_ready``)
====== ==================================================================================

Not stated per operation: 405 (it answers a method the path does *not* define, so no
operation can carry it; it is a problem too and carries ``Allow``).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import yaml
from litestar import Litestar

__all__ = [
    "CONTRACTS_DIR",
    "build_contracts",
    "contract_path",
    "drifted",
    "main",
    "render_json",
    "render_yaml",
    "write_contracts",
]

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts" / "openapi"
PROBLEM_MEDIA_TYPE = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-ID"
IDEMPOTENCY_HEADER = "Idempotency-Key"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
# APIs whose operations may reach a wrapped system (so may answer 502 / 503).
UPSTREAM_PREFIXES = ("system-", "process-", "experience-")

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_CORRELATION_REF = {"$ref": f"#/components/headers/{CORRELATION_HEADER}"}

# The problem response (a component under components/responses) of each status.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "400": (
        "BadRequest",
        "The request does not match the contract (`validation_failed`, "
        "`malformed_body`, `invalid_events`) or a system refuses it (`invalid_request`).",
    ),
    "401": (
        "Unauthorized",
        "No access token, or not a valid one (`invalid_token`); see `WWW-Authenticate`.",
    ),
    "403": (
        "Forbidden",
        "The access token lacks the operation's scope (`insufficient_scope`).",
    ),
    "404": ("NotFound", "No such resource, or not yours (`not_found` or a more specific code)."),
    "406": ("NotAcceptable", "No acceptable representation (`not_acceptable`)."),
    "409": (
        "Conflict",
        "The request clashes with the current state (`conflict`, "
        "`idempotency_in_flight`: retry later, `invalid_transition`).",
    ),
    "413": (
        "PayloadTooLarge",
        "More bytes or events than the stated limits (`payload_too_large`).",
    ),
    "415": (
        "UnsupportedMediaType",
        "A body in a format the operation does not take (`unsupported_media_type`).",
    ),
    "422": (
        "Unprocessable",
        "Valid input a business rule refuses "
        "(`business_rule_violation` or a more specific code), or an Idempotency-Key "
        "first used with a different request (`idempotency_key_reused`).",
    ),
    "429": ("TooManyRequests", "Too many requests (`rate_limited`); see `Retry-After`."),
    "500": (
        "InternalError",
        "Unexpected error (`internal_error`); quote the correlation ID to support.",
    ),
    "502": (
        "BadGateway",
        "A wrapped system failed (`upstream_error`, `system_unavailable`, `ambiguous_commit`).",
    ),
    "503": (
        "ServiceUnavailable",
        "A wrapped system's quota is spent (`system_throttled`, "
        "see `Retry-After`) or a dependency does not answer (`not_ready`).",
    ),
}
_IDEMPOTENT_BAD_REQUEST = (
    "BadRequestIdempotent",
    _PROBLEMS["400"][1] + " Also `idempotency_key_required` where this operation requires "
    "an `Idempotency-Key`.",
)
_RETRY_AFTER_STATUSES = frozenset({"429", "503"})
_CHALLENGE_STATUSES = frozenset({"401", "403"})
# APIs that are not rate limited (probes must always answer).
UNLIMITED_APIS = frozenset({"gateway-health"})
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")

_PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem: every non-2xx answer of the gateway.",
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "https://meterline.dev/problems/<code>",
            },
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string", "description": "The request path."},
            "code": {"type": "string", "description": "Stable error code (docs/problems.md)."},
            "correlation_id": {
                "type": "string",
                "description": "Equals the X-Correlation-ID header.",
            },
            "invalid_params": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/InvalidParam"},
            },
            "retry_after": {"type": "number", "minimum": 0},
        },
        "required": ["type", "title", "status", "detail", "instance", "code", "correlation_id"],
    },
    "InvalidParam": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["name", "reason"],
    },
}

_HEADERS: dict[str, Any] = {
    CORRELATION_HEADER: {
        "description": "The request's correlation ID: the caller's `X-Correlation-ID` "
        "(1-128 of `[A-Za-z0-9._:-]`), else the trace ID of a W3C "
        "`traceparent`, else a fresh UUIDv7.",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": False,
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request "
        "with the same Idempotency-Key.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {
        "description": 'The Bearer challenge (RFC 6750), e.g. `Bearer realm="meterline", '
        'error="invalid_token"`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": "The rate-limit policy applied (draft-ietf-httpapi-ratelimit-headers), "
        'e.g. `"read";q=200;w=1`: quota `q` per window of `w` seconds.',
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of it, e.g. `"read";r=199;t=1`: `r` requests remain, '
        "the window resets in `t` seconds.",
        "required": True,
        "schema": {"type": "string"},
    },
}

_DESCRIPTION = (
    "Part of the Meterline gateway. Every error is `application/problem+json` "
    "(RFC 9457; codes in docs/problems.md). Send `X-Correlation-ID` (1-128 of "
    "`[A-Za-z0-9._:-]`) or a W3C `traceparent` to correlate; every response echoes it. "
    "Lists page with `?limit=&starting_after=`; amounts are decimal strings."
)


# --- building --------------------------------------------------------------------------


def _plain(schema: Any) -> Any:
    """JSON-compatible plain data (Decimals and the like as JSON would carry them)."""
    return msgspec.json.decode(msgspec.json.encode(schema))


# Packages whose msgspec Structs appear in the contracts.
_PROJECT_PACKAGES = ("canonical", "system_apis", "process_apis", "experience_apis", "gateway")


def _structs() -> dict[str, list[type]]:
    """The project's msgspec Structs by class name (other packages' are never looked at,
    so what a test or a library defines cannot change the contracts)."""
    found: dict[str, list[type]] = {}
    pending = [msgspec.Struct]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if sub.__module__.split(".")[0] in _PROJECT_PACKAGES:
                found.setdefault(sub.__name__, []).append(sub)
    return found


def _msgspec_schemas(litestar_schemas: dict[str, Any]) -> dict[str, Any]:
    """Litestar's component schemas with every Struct's replaced by msgspec's."""
    structs = _structs()
    types = []
    for name in sorted(litestar_schemas):
        candidates = set(structs.get(name, []))
        if len(candidates) > 1:
            raise ValueError(
                f"component {name!r}: several Structs of that name "
                f"({sorted(c.__module__ for c in candidates)}); rename one"
            )
        types.extend(candidates)
    _, generated = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    replaced = {t.__name__ for t in types}
    schemas = dict(litestar_schemas)
    for name, schema in generated.items():
        if name in schemas and name not in replaced:
            raise ValueError(f"msgspec schema {name!r} clashes with a Litestar component")
        schemas[name] = schema
    return _plain(schemas)


def _api_routers() -> list[tuple[str, Any]]:
    from gateway.app import API_ROUTERS

    return list(API_ROUTERS)


def _owner(path: str, prefixes: list[tuple[str, str]]) -> str | None:
    for name, prefix in prefixes:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return name
    return None


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _used_components(paths: dict[str, Any], components: dict[str, dict[str, Any]]):
    """(kind, name) of every component ``paths`` reference, transitively."""
    seen: set[tuple[str, str]] = set()
    pending = list(_refs(paths))
    while pending:
        ref = pending.pop()
        parts = ref.split("/")
        if len(parts) != 4 or parts[:2] != ["#", "components"]:
            raise ValueError(f"unsupported $ref {ref!r}")
        key = (parts[2], parts[3])
        if key in seen:
            continue
        if key[1] not in components.get(key[0], {}):
            raise ValueError(f"dangling $ref {ref!r}")
        seen.add(key)
        pending.extend(_refs(components[key[0]][key[1]]))
    return seen


def _clean_descriptions(node: Any) -> Any:
    """Docstring-derived descriptions without their source indentation."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v)
            if k == "description" and isinstance(v, str)
            else _clean_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its ``null`` alternative (URLs and headers carry none)."""
    schema = dict(schema)
    for keyword in ("oneOf", "anyOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del schema[keyword]
            if len(rest) == 1:
                schema = {**rest[0], **schema}
            else:
                schema[keyword] = rest
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        kinds = [k for k in kind if k != "null"]
        schema["type"] = kinds[0] if len(kinds) == 1 else kinds
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        schema["enum"] = [v for v in schema["enum"] if v is not None]
    return schema


def _problem_response(name: str, description: str, status: str) -> dict[str, Any]:
    headers: dict[str, Any] = {CORRELATION_HEADER: dict(_CORRELATION_REF)}
    if status in _RETRY_AFTER_STATUSES:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status in _CHALLENGE_STATUSES:
        headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
    if status == "429":
        for name in RATE_LIMIT_HEADERS:
            headers[name] = {"$ref": f"#/components/headers/{name}"}
    return {
        "description": description,
        "headers": headers,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}},
    }


def _problem_statuses(api: str, path: str, method: str, operation: dict[str, Any]) -> set[str]:
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    statuses = {"500"}
    if params or has_body:
        statuses.add("400")
    if "{" in path:
        statuses.add("404")
    if has_body:
        statuses |= {"413", "415"}
    if method in WRITE_METHODS and api != "gateway-oauth":
        statuses |= {"409", "422"}
    if api.startswith(UPSTREAM_PREFIXES):
        statuses |= {"502", "503"}
    if api == "gateway-health" and path.endswith("/ready"):
        statuses.add("503")
    if operation.get("security"):
        statuses |= {"401", "403"}
    if api not in UNLIMITED_APIS:
        statuses.add("429")
    return statuses


def _own_error_response(response: Any) -> bool:
    """An error response an operation documents itself in another format than problem+json
    (the token endpoint answers in RFC 6749's)."""
    content = response.get("content", {}) if isinstance(response, dict) else {}
    return any(
        media.get("schema", {}).get("$ref", "").endswith("/TokenError")
        for media in content.values()
    )


def _fix_operation(api: str, path: str, method: str, operation: dict[str, Any]) -> None:
    params = operation.get("parameters", [])
    idempotent = False
    for param in params:
        if param.get("in") in ("query", "path", "header", "cookie") and "schema" in param:
            param["schema"] = _non_null(param["schema"])
        name = param.get("name", "").lower()
        if param.get("in") == "header" and name == IDEMPOTENCY_HEADER.lower():
            idempotent = True

    responses = operation.setdefault("responses", {})
    statuses = {s for s in responses if s.isdigit() and int(s) >= 400}
    statuses |= _problem_statuses(api, path, method, operation)
    for status, response in list(responses.items()):
        if status.isdigit() and int(status) < 400:
            headers = dict(response.get("headers") or {})
            for header in headers.values():  # declared by a route: Litestar gives no schema
                if "$ref" not in header:
                    header.setdefault("schema", {"type": "string"})
            headers[CORRELATION_HEADER] = dict(_CORRELATION_REF)
            if idempotent:
                headers["Idempotent-Replayed"] = {
                    "$ref": "#/components/headers/Idempotent-Replayed"
                }
            if api not in UNLIMITED_APIS:
                for header in RATE_LIMIT_HEADERS:
                    headers[header] = {"$ref": f"#/components/headers/{header}"}
            response["headers"] = headers
    for status in statuses:
        if _own_error_response(responses.get(status)):
            headers = {CORRELATION_HEADER: dict(_CORRELATION_REF)}
            if status == "401":
                headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
            responses[status]["headers"] = headers
            continue
        name = _PROBLEMS.get(status, (None,))[0]
        if status == "400" and idempotent:
            name = _IDEMPOTENT_BAD_REQUEST[0]
        if name is None:
            raise ValueError(f"{method.upper()} {path}: no problem response for {status}")
        responses[status] = {"$ref": f"#/components/responses/{name}"}
    operation["responses"] = dict(sorted(responses.items()))


def _problem_components() -> dict[str, Any]:
    responses = {
        name: _problem_response(name, description, status)
        for status, (name, description) in _PROBLEMS.items()
    }
    name, description = _IDEMPOTENT_BAD_REQUEST
    responses[name] = _problem_response(name, description, "400")
    return responses


def build_contracts(app: Litestar) -> dict[str, dict[str, Any]]:
    """One OpenAPI document per API of ``API_ROUTERS``, keyed by contract name."""
    full = _plain(app.openapi_schema.to_schema())
    version = full["info"]["version"]
    routers = _api_routers()
    prefixes = sorted(
        ((name, router.path) for name, router in routers),
        key=lambda item: len(item[1]),
        reverse=True,
    )

    paths_by_api: dict[str, dict[str, Any]] = {name: {} for name, _ in routers}
    for path, item in full.get("paths", {}).items():
        owner = _owner(path, prefixes)
        if owner is None:
            raise ValueError(f"path {path} belongs to no API in API_ROUTERS")
        paths_by_api[owner][path] = item

    components: dict[str, dict[str, Any]] = copy.deepcopy(full.get("components", {}))
    components["schemas"] = _msgspec_schemas(components.get("schemas", {}))
    for kind, extra in (
        ("schemas", _PROBLEM_SCHEMAS),
        ("headers", _HEADERS),
        ("responses", _problem_components()),
    ):
        for name, value in extra.items():
            if name in components.get(kind, {}) and kind == "schemas":
                raise ValueError(f"component schema {name!r} clashes with the problem schema")
            components.setdefault(kind, {})[name] = copy.deepcopy(value)

    documents = {}
    for name, _ in routers:
        paths: dict[str, Any] = {}
        for path in sorted(paths_by_api[name]):
            item = copy.deepcopy(paths_by_api[name][path])
            ordered = {m: item.pop(m) for m in HTTP_METHODS if m in item}
            for method, operation in ordered.items():
                _fix_operation(name, path, method, operation)
            paths[path] = {**item, **ordered}
        used = _used_components(paths, components)
        # Every contract declares the OAuth 2.0 scheme (and its scopes), used or not.
        used |= {("securitySchemes", n) for n in components.get("securitySchemes", {})}
        document_components = {
            kind: {n: components[kind][n] for n in sorted(components[kind]) if (kind, n) in used}
            for kind in sorted(components)
        }
        tags = sorted(
            {
                t
                for item in paths.values()
                for m in HTTP_METHODS
                for t in item.get(m, {}).get("tags", [])
            }
        )
        document: dict[str, Any] = {
            "openapi": full["openapi"],
            "info": {
                "title": f"Meterline {name} API",
                "version": version,
                "description": _DESCRIPTION,
            },
            "servers": full.get("servers", [{"url": "/"}]),
            "tags": [{"name": t} for t in tags],
            "paths": paths,
            "components": {k: v for k, v in document_components.items() if v},
        }
        if not document["tags"]:
            del document["tags"]
        documents[name] = _clean_descriptions(document)
    return documents


# --- rendering and files ---------------------------------------------------------------


def render_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def contract_path(name: str, directory: Path = CONTRACTS_DIR) -> Path:
    return directory / f"{name}.v1.yaml"


def _contract_app() -> Litestar:
    """An app to read the schema from: no database is ever opened."""
    from gateway.app import create_app
    from gateway.settings import Settings

    return create_app(Settings.from_env({}, database_url="sqlite+aiosqlite:///:memory:"))


def write_contracts(app: Litestar | None = None, directory: Path = CONTRACTS_DIR) -> list[Path]:
    documents = build_contracts(app or _contract_app())
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in documents.items():
        path = contract_path(name, directory)
        text = render_yaml(document)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in sorted(set(directory.glob("*.v1.yaml")) - set(written)):
        stale.unlink()
    return written


def drifted(app: Litestar | None = None, directory: Path = CONTRACTS_DIR) -> list[str]:
    """What differs between the code and the committed files (empty: no drift)."""
    documents = build_contracts(app or _contract_app())
    problems = []
    expected = set()
    for name, document in documents.items():
        path = contract_path(name, directory)
        expected.add(path)
        if not path.exists():
            problems.append(f"{path.name}: missing")
        elif path.read_text(encoding="utf-8") != render_yaml(document):
            problems.append(f"{path.name}: differs from the code")
    for extra in sorted(set(directory.glob("*.yaml")) - expected):
        problems.append(f"{extra.name}: no such API in API_ROUTERS")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.contracts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["write", "check"])
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write_contracts():
            print(f"wrote {path.relative_to(CONTRACTS_DIR.parent.parent)}")
        return 0
    problems = drifted()
    for problem in problems:
        print(f"contract drift: {problem}", file=sys.stderr)
    if problems:
        print("run `make contracts` and review the diff", file=sys.stderr)
        return 1
    print("contracts match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
