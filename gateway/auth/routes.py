"""The authorization server's HTTP face: the token endpoint (RFC 6749), the JWK Set and
the server metadata (RFC 8414). Token answers follow RFC 6749 §5 (``application/json``,
``error`` and ``error_description``); error bodies also carry the problem+json members
that every other Meterline error has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.params import Dependency

from canonical import correlation, errors
from gateway.auth.keys import KeyRing
from gateway.auth.server import JWKS_PATH, TOKEN_PATH, TokenIssuer, server_metadata
from gateway.problems import PROBLEM_BASE
from gateway.settings import Settings

__all__ = ["router"]

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_TOKEN_REQUEST_BYTES = 8_192


class AccessToken(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class TokenError(msgspec.Struct, omit_defaults=True):
    """RFC 6749 §5.2, plus the RFC 9457 members shared by every Meterline error."""

    error: str
    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    correlation_id: str
    error_description: str | None = None


class JsonWebKeySet(msgspec.Struct):
    keys: list[dict[str, Any]]


class ServerMetadata(msgspec.Struct):
    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    response_types_supported: list[str]


@dataclass
class TokenOperation(Operation):
    """The form body, which Litestar cannot infer from a raw body."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Client credentials grant; the client authenticates with HTTP Basic "
            "(client_secret_basic) or with client_id and client_secret in the form "
            "(client_secret_post).",
            content={
                FORM: OpenAPIMediaType(
                    schema=Schema(
                        type="object",
                        required=["grant_type"],
                        properties={
                            "grant_type": Schema(type="string", enum=["client_credentials"]),
                            "scope": Schema(type="string", description="Space-separated."),
                            "client_id": Schema(type="string"),
                            "client_secret": Schema(type="string"),
                        },
                    )
                )
            },
        )


def _token_error(request: Request, status: int, error: str, description: str, headers=None):
    body = TokenError(
        error=error,
        error_description=description,
        type=PROBLEM_BASE + error,
        title=error.replace("_", " ").capitalize(),
        status=status,
        detail=description,
        instance=request.url.path,
        code=error,
        correlation_id=correlation.ensure(),
    )
    return Response(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _form(body: bytes) -> dict[str, str] | str:
    """The form fields, or why the body is not an acceptable one."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return "the body is not a valid form"
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        # RFC 6749 §3.2: request parameters MUST NOT be included more than once.
        return f"repeated parameters: {', '.join(repeated)}"
    return {name: values[0] for name, values in fields.items()}


@post(
    TOKEN_PATH,
    operation_class=TokenOperation,
    status_code=200,
    summary="Obtain an access token (client credentials grant)",
    opt={"public": True, "rate_limit": "token"},
    request_max_body_size=MAX_TOKEN_REQUEST_BYTES,
    responses={
        400: ResponseSpec(
            TokenError,
            description="invalid_request, invalid_scope, "
            "unsupported_grant_type, unauthorized_client",
        ),
        401: ResponseSpec(TokenError, description="invalid_client"),
        415: ResponseSpec(TokenError, description="the body is not a form"),
    },
)
async def token(
    request: Request,
    settings: Settings,
    token_issuer: TokenIssuer | None = Dependency(skip_validation=True),
) -> Response[AccessToken]:
    if token_issuer is None:
        # Tokens come from an external authorization server: this gateway grants none.
        return _token_error(
            request,
            400,
            "unsupported_grant_type",
            f"this gateway issues no tokens; obtain them from {settings.oauth_external_issuer}",
        )
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        return _token_error(
            request, 415, "invalid_request", f"the body must be {FORM}", {"Accept-Post": FORM}
        )
    form = _form(await request.body())
    if isinstance(form, str):
        return _token_error(request, 400, "invalid_request", form)
    if not form.get("grant_type"):
        # RFC 6749 §5.2: a missing required parameter is ``invalid_request`` (Authlib
        # would answer ``unsupported_grant_type``).
        return _token_error(request, 400, "invalid_request", "missing grant_type")
    answer = await token_issuer.token(request.headers, form)
    if answer.status != 200:
        error = str(answer.body.get("error", "invalid_request"))
        description = str(answer.body.get("error_description") or error.replace("_", " "))
        return _token_error(request, answer.status, error, description, answer.headers)
    # Per client, once the client is known to be genuine: nobody can spend another
    # client's budget by sending its client_id.
    limit_headers = await request.app.state.rate_limits.check_client(
        "token_client", answer.client_id
    )
    return Response(
        AccessToken(
            access_token=answer.body["access_token"],
            token_type="Bearer",
            expires_in=int(answer.body["expires_in"]),
            scope=answer.body.get("scope", ""),
        ),
        headers={**answer.headers, **NO_STORE, **limit_headers},
    )


def _built_in_issuer(token_issuer: TokenIssuer | None) -> None:
    """With an external authorization server there are no keys or metadata of ours to
    publish: its own are the ones that count."""
    if token_issuer is None:
        raise errors.NotFound("tokens are issued by the external authorization server")


@get(
    JWKS_PATH,
    summary="Public keys that sign access tokens (RFC 7517)",
    raises=[NotFoundException],  # when tokens come from an external issuer
)
async def jwks(
    keyring: KeyRing = Dependency(skip_validation=True),
    token_issuer: TokenIssuer | None = Dependency(skip_validation=True),
) -> Response[JsonWebKeySet]:
    _built_in_issuer(token_issuer)
    keys = await keyring.jwks()
    # Short cache: a rotation must reach resource servers well within a token lifetime.
    return Response(JsonWebKeySet(**keys), headers={"Cache-Control": "public, max-age=300"})


@get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
    raises=[NotFoundException],  # when tokens come from an external issuer
)
async def metadata(
    settings: Settings, token_issuer: TokenIssuer | None = Dependency(skip_validation=True)
) -> ServerMetadata:
    _built_in_issuer(token_issuer)
    return msgspec.convert(server_metadata(settings.oauth_issuer), ServerMetadata)


router = Router(
    path="/",
    route_handlers=[token, jwks, metadata],
    tags=["gateway-oauth"],
    opt={"public": True, "rate_limit": "read"},
)
