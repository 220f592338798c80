"""The token endpoint: Authlib's authorization server with the client credentials grant
(RFC 6749 §4.4), client_secret_basic and client_secret_post, issuing RFC 9068 JWT
access tokens signed by the key ring.

Authlib's server is synchronous; the two things it needs from storage (the client and
the signing key) are fetched asynchronously first, and the grant then runs in a worker
thread, since verifying an Argon2 hash is deliberately slow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import msgspec
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc.jwk import KeySet, RSAKey

from canonical.access import SCOPES
from gateway.auth.clients import AUTH_METHODS, ClientRegistry, OAuthClient, unknown_client
from gateway.auth.keys import ALGORITHM, KeyRing

__all__ = ["TokenIssuer", "TokenResponse", "server_metadata"]

TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/.well-known/jwks.json"


class TokenResponse(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    client_id: str | None


class _ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        # RFC 6749 §3.3: a scope the client was never granted is ``invalid_scope``, not
        # silently dropped.
        super().validate_requested_scope()
        client, scope = self.request.client, self.request.payload.scope
        if self.request.narrow_scope:
            # The token carries those of the scopes the client holds (the generator asks
            # ``get_allowed_scope``); none of them is still refused.
            if scope and not client.get_allowed_scope(scope):
                raise InvalidScopeError("the client is not allowed any requested scope")
            return
        if not client.allows_scope(scope):
            raise InvalidScopeError("the client is not allowed the requested scope")


class _Request(OAuth2Request):
    def __init__(
        self, uri: str, headers: Mapping[str, str], form: dict[str, str], *, narrow_scope: bool
    ) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form
        self.narrow_scope = narrow_scope

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Generator(JWTBearerTokenGenerator):
    def __init__(self, issuer: str, audience: str, ttl: int, key: RSAKey) -> None:
        super().__init__(issuer=issuer, alg=ALGORITHM, expires_generator=ttl)
        self._audience = audience
        self._key = key

    def get_jwks(self) -> KeySet:
        # A one-key set: joserfc then writes the key's ``kid`` into the JWT header.
        return KeySet([self._key])

    def get_audiences(self, client, user, scope) -> str:
        return self._audience

    def get_extra_claims(self, client, grant_type, user, scope) -> dict[str, str]:
        partner = client.record.partner_id
        return {"partner_id": partner} if partner else {}


class _Server(AuthorizationServer):
    def __init__(self, client: OAuthClient | None, generator: _Generator) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._client = client
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", generator)

    def query_client(self, client_id: str) -> OAuthClient | None:
        if self._client is not None and self._client.get_client_id() == client_id:
            return self._client
        return None

    def save_token(self, token, request) -> None:
        # Self-contained JWTs: nothing to store.
        return None

    def send_signal(self, name, *args, **kwargs) -> None:
        return None

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status, body, headers) -> tuple[int, dict, dict[str, str]]:
        return status, body, dict(headers)


def _claimed_client_id(headers: Mapping[str, str], form: dict[str, str]) -> str | None:
    client_id, _ = extract_basic_authorization(headers)
    return client_id or form.get("client_id")


class TokenIssuer:
    def __init__(
        self, clients: ClientRegistry, keyring: KeyRing, *, issuer: str, audience: str, ttl: int
    ) -> None:
        self._clients = clients
        self._keyring = keyring
        self._issuer = issuer.rstrip("/")
        self._audience = audience
        self._ttl = ttl

    async def token(
        self, headers: Mapping[str, str], form: dict[str, str], *, narrow_scope: bool = False
    ) -> TokenResponse:
        """Answer a token request as RFC 6749 §5 prescribes (success or error);
        ``headers`` must be case-insensitive.

        ``narrow_scope`` (in-process callers only, never the token endpoint): grant those
        of the requested scopes the client holds instead of refusing the request, so a
        caller content with fewer spends one secret check, not one per scope set."""
        claimed = _claimed_client_id(headers, form)
        record = await self._clients.find(claimed) if claimed else None
        if record is not None:
            client = OAuthClient(record)
        else:
            # In a worker thread: the first call hashes the decoy secret.
            client = await anyio.to_thread.run_sync(unknown_client, claimed) if claimed else None
        generator = _Generator(
            self._issuer, self._audience, self._ttl, await self._keyring.signing_key()
        )
        server = _Server(client, generator)
        request = _Request(self._issuer + TOKEN_PATH, headers, form, narrow_scope=narrow_scope)
        status, body, response_headers = await anyio.to_thread.run_sync(
            server.create_token_response, request
        )
        if status == 401 and "WWW-Authenticate" not in response_headers:
            response_headers["WWW-Authenticate"] = 'Basic realm="meterline"'
        authenticated = status == 200 and client is not None
        return TokenResponse(
            status=status,
            body=body,
            headers=response_headers,
            client_id=client.get_client_id() if authenticated else None,
        )


def server_metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    issuer = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
    }
