"""The token endpoint (RFC 6749 §4.4 client credentials, §5 answers), the RFC 9068 shape
of the tokens it issues, the JWK Set and the RFC 8414 server metadata."""

from __future__ import annotations

import time

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from canonical.access import SCOPES
from tests.support.app import gateway_client
from tests.support.auth import issue_token

TOKEN = "/oauth/token"
FORM = {"content-type": "application/x-www-form-urlencoded"}
GRANT = {"grant_type": "client_credentials"}
BILLING_READ_ROUTE = "/process/billing/v1/runs"
USAGE_WRITE_ROUTE = "/process/usage/v1/events"
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def assert_token_error(response: httpx.Response, status: int, error: str) -> None:
    """An RFC 6749 §5.2 error answer: JSON with ``error`` and ``error_description``, never
    a token, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error and body["code"] == error
    assert body["error_description"]
    assert "access_token" not in body
    assert response.headers["cache-control"] == "no-store"


async def test_client_credentials_grant_with_basic_and_post_authentication(database_url):
    """Both client authentication methods yield a usable Bearer token, uncached, carrying
    every scope the client holds when no ``scope`` is asked for."""
    async with gateway_client(database_url, authenticated=False) as client:
        credentials = await client.container.clients.create(
            "reporting", ["billing:read", "usage:write"]
        )
        basic = await client.post(
            TOKEN, data=GRANT, auth=(credentials.client_id, credentials.client_secret)
        )
        post = await client.post(
            TOKEN,
            data={
                **GRANT,
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            },
        )
        for response in (basic, post):
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["pragma"] == "no-cache"
            body = response.json()
            assert body["token_type"] == "Bearer"
            assert body["expires_in"] == 900
            assert set(body["scope"].split()) == {"billing:read", "usage:write"}
            used = await client.get(
                BILLING_READ_ROUTE, headers={"Authorization": f"Bearer {body['access_token']}"}
            )
            assert used.status_code == 200, used.text
        assert basic.json()["access_token"] != post.json()["access_token"]


async def test_scope_parameter_narrows_and_never_widens(sqlite_url):
    """``scope`` selects a subset of the client's scopes (the token then lacks the rest);
    a scope the client does not hold, or one that does not exist, is ``invalid_scope``."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        credentials = await client.container.clients.create(
            "reporting", ["billing:read", "usage:write"]
        )
        auth = (credentials.client_id, credentials.client_secret)

        narrowed = await client.post(TOKEN, data={**GRANT, "scope": "billing:read"}, auth=auth)
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["scope"] == "billing:read"
        headers = {"Authorization": f"Bearer {narrowed.json()['access_token']}"}
        assert (await client.get(BILLING_READ_ROUTE, headers=headers)).status_code == 200
        refused = await client.post(USAGE_WRITE_ROUTE, json=[], headers=headers)
        assert refused.status_code == 403, refused.text

        for asked in ("system:read", "billing:read system:write", "billing:read no:such-scope"):
            response = await client.post(TOKEN, data={**GRANT, "scope": asked}, auth=auth)
            assert_token_error(response, 400, "invalid_scope")


async def test_client_authentication_failures_are_invalid_client(sqlite_url):
    """Wrong secret (either method), unknown client and no credentials at all answer
    401 ``invalid_client`` with a ``WWW-Authenticate`` challenge."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        credentials = await client.container.clients.create("ingest", ["usage:write"])
        attempts = {
            "wrong secret (basic)": {"data": GRANT, "auth": (credentials.client_id, "nope")},
            "wrong secret (post)": {
                "data": {**GRANT, "client_id": credentials.client_id, "client_secret": "nope"}
            },
            "another client's secret": {
                "data": GRANT,
                "auth": ("cli_unknown", credentials.client_secret),
            },
            "unknown client": {"data": GRANT, "auth": ("cli_unknown", "whatever")},
            "client_id without secret": {"data": {**GRANT, "client_id": credentials.client_id}},
            "no credentials": {"data": GRANT},
        }
        for name, request in attempts.items():
            response = await client.post(TOKEN, **request)
            assert_token_error(response, 401, "invalid_client")
            assert response.headers.get("www-authenticate", "").startswith("Basic"), name


async def test_unknown_client_ids_cost_a_secret_verification_too(sqlite_url, monkeypatch):
    """An unknown client_id is refused only after the same Argon2 verification a real
    client's wrong secret costs, so answer times do not reveal which ids exist."""
    from gateway.auth import clients as clients_module

    verified: list[str] = []
    original = clients_module.OAuthClient.check_client_secret

    def counting(self, secret):
        verified.append(self.get_client_id())
        return original(self, secret)

    monkeypatch.setattr(clients_module.OAuthClient, "check_client_secret", counting)
    async with gateway_client(sqlite_url, authenticated=False) as client:
        response = await client.post(TOKEN, data=GRANT, auth=("cli_nobody", "guess"))
    assert_token_error(response, 401, "invalid_client")
    assert verified == ["cli_nobody"]


async def test_malformed_requests_are_rfc6749_errors(sqlite_url):
    """Unsupported grants, a missing ``grant_type``, repeated parameters and non-form
    bodies each get their own RFC 6749 error (or 415), never a token."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        credentials = await client.container.clients.create("ingest", ["usage:write"])
        auth = (credentials.client_id, credentials.client_secret)

        for grant in ("password", "authorization_code", "refresh_token", "urn:x:custom"):
            response = await client.post(TOKEN, data={"grant_type": grant}, auth=auth)
            assert_token_error(response, 400, "unsupported_grant_type")

        for body in (b"scope=usage%3Awrite", b"grant_type=", b""):
            response = await client.post(TOKEN, content=body, headers=FORM, auth=auth)
            assert_token_error(response, 400, "invalid_request")
            assert "grant_type" in response.json()["error_description"]

        for body in (
            b"grant_type=client_credentials&grant_type=client_credentials",
            b"grant_type=client_credentials&scope=usage%3Awrite&scope=usage%3Awrite",
        ):
            response = await client.post(TOKEN, content=body, headers=FORM, auth=auth)
            assert_token_error(response, 400, "invalid_request")
            assert "repeated" in response.json()["error_description"]

        not_forms = [
            {"json": GRANT},
            {
                "content": b"grant_type=client_credentials",
                "headers": {"content-type": "text/plain"},
            },
            {"files": {"grant_type": (None, "client_credentials")}},
            {"content": b"grant_type=client_credentials"},
        ]
        for request in not_forms:
            response = await client.post(TOKEN, auth=auth, **request)
            assert_token_error(response, 415, "invalid_request")
            assert response.headers["accept-post"] == "application/x-www-form-urlencoded"

        # The same client, asked properly, does get a token: the refusals were the requests'.
        assert await issue_token(client, credentials.client_id, credentials.client_secret)


async def test_disabled_client_gets_no_token(database_url):
    """A disabled client is refused with its correct secret; enabled again, it is served."""
    async with gateway_client(database_url, authenticated=False) as client:
        clients = client.container.clients
        credentials = await clients.create("ingest", ["usage:write"])
        auth = (credentials.client_id, credentials.client_secret)

        await clients.set_active(credentials.client_id, False)
        response = await client.post(TOKEN, data=GRANT, auth=auth)
        assert_token_error(response, 400, "unauthorized_client")

        await clients.set_active(credentials.client_id, True)
        assert (await client.post(TOKEN, data=GRANT, auth=auth)).status_code == 200


async def test_access_tokens_are_rfc9068_jwts_verifiable_with_the_jwks(sqlite_url):
    """Header ``typ: at+jwt``, ``alg: RS256`` and a ``kid`` published in the JWKS; claims
    iss, aud, sub, client_id, scope, jti, iat and exp, plus ``partner_id`` for a partner
    client only. The JWKS holds public keys only."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        settings = client.container.settings
        registry = client.container.clients
        first_party = await registry.create("reporting", ["billing:read", "usage:write"])
        partner = await registry.create(
            "northwind", ["portal:read", "partner:read"], partner_id="prt_northwind"
        )
        before = int(time.time())
        tokens = {
            "first": await issue_token(client, first_party.client_id, first_party.client_secret),
            "again": await issue_token(client, first_party.client_id, first_party.client_secret),
            "partner": await issue_token(
                client, partner.client_id, partner.client_secret, "portal:read"
            ),
        }

        response = await client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        jwks = response.json()
        assert jwks["keys"]
        for key in jwks["keys"]:
            assert key["kty"] == "RSA" and key["kid"]
            assert not PRIVATE_JWK_MEMBERS & key.keys(), "the JWKS must not leak private keys"
        key_set = KeySet.import_key_set(jwks)

        decoded = {name: jwt.decode(t, key_set, algorithms=["RS256"]) for name, t in tokens.items()}
        for token in decoded.values():
            assert token.header["typ"] == "at+jwt"
            assert token.header["alg"] == "RS256"
            assert token.header["kid"] in {k["kid"] for k in jwks["keys"]}
            claims = token.claims
            assert claims["iss"] == settings.oauth_issuer.rstrip("/")
            assert claims["aud"] == settings.oauth_audience
            assert claims["sub"] == claims["client_id"]
            assert before - 5 <= claims["iat"] <= int(time.time()) + 5
            assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds
            assert claims["jti"]

        first, again, partner_token = (decoded[n].claims for n in ("first", "again", "partner"))
        assert first["client_id"] == first_party.client_id
        assert set(first["scope"].split()) == {"billing:read", "usage:write"}
        assert "partner_id" not in first
        assert first["jti"] != again["jti"]
        assert partner_token["client_id"] == partner.client_id
        assert partner_token["scope"] == "portal:read"
        assert partner_token["partner_id"] == "prt_northwind"


async def test_server_metadata_follows_rfc8414(sqlite_url):
    """The metadata names this issuer, its token endpoint and JWKS, the one grant and the
    two client authentication methods, and every scope; its ``issuer`` is the ``iss`` of
    the tokens. Neither it nor the JWKS needs a token."""
    issuer = "http://localhost:9000"
    async with gateway_client(sqlite_url, authenticated=False, oauth_issuer=issuer) as client:
        response = await client.get("/.well-known/oauth-authorization-server")
        assert response.status_code == 200, response.text
        metadata = response.json()
        assert metadata["issuer"] == issuer
        assert metadata["token_endpoint"] == issuer + TOKEN
        assert metadata["jwks_uri"] == issuer + "/.well-known/jwks.json"
        assert metadata["grant_types_supported"] == ["client_credentials"]
        assert set(metadata["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
        }
        assert metadata["scopes_supported"] == list(SCOPES)
        assert "none" not in metadata.get("token_endpoint_auth_signing_alg_values_supported", [])

        credentials = await client.container.clients.create("ingest", ["usage:write"])
        token = await issue_token(client, credentials.client_id, credentials.client_secret)
        jwks = KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json())
        assert jwt.decode(token, jwks).claims["iss"] == metadata["issuer"]
