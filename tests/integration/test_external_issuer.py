"""External authorization server mode (``oauth_external_issuer`` and
``oauth_external_jwks_url``): the gateway validates tokens signed by the external issuer's
keys, fetched from its JWKS (served here by an in-process mock), caches them, fetches
again on an unknown ``kid`` at most once per ``jwks_refresh_min_seconds``, and refuses to
issue tokens itself."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import tokens as tokens_module
from gateway.auth.tokens import RemoteJwks, TokenVerifier
from gateway.settings import Settings
from gateway.wiring import build_container
from tests.support import forge
from tests.support.app import UNLIMITED
from tests.support.clock import Clock

EXTERNAL_ISSUER = "https://login.example.test/realms/meterline"
JWKS_URL = "https://login.example.test/realms/meterline/jwks"
ROUTE = "/process/billing/v1/runs"  # needs billing:read


class ExternalIssuer:
    """The external authorization server's JWKS endpoint, counting its fetches."""

    def __init__(self, *keys) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.fetches += 1
        return httpx.Response(200, json={"keys": [key.as_dict(private=False) for key in self.keys]})

    def token(self, key, **claims) -> str:
        return forge.sign(key, forge.claims(issuer=EXTERNAL_ISSUER, **claims))


@contextlib.asynccontextmanager
async def external_gateway(database_url: str, issuer: ExternalIssuer, **overrides):
    settings = Settings.from_env(
        {},
        database_url=database_url,
        oauth_external_issuer=EXTERNAL_ISSUER,
        oauth_external_jwks_url=JWKS_URL,
        **{**UNLIMITED, **overrides},
    )
    container = build_container(settings)
    assert isinstance(container.key_source, RemoteJwks)
    assert container.token_issuer is None
    await container.key_source.aclose()
    container.key_source = RemoteJwks(
        JWKS_URL,
        min_interval=settings.jwks_refresh_min_seconds,
        client=httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle)),
    )
    container.token_verifier = TokenVerifier(
        container.key_source, issuer=EXTERNAL_ISSUER, audience=settings.oauth_audience
    )
    app = create_app(settings, container)
    assert app.state.token_verifier is container.token_verifier
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            client.container = container
            yield client
    finally:
        await container.aclose()


async def get(client, token: str) -> httpx.Response:
    return await client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(tokens_module, "time", clock)
    return clock


@pytest.fixture(scope="module")
def external_keys():
    return forge.new_rsa_key("ext-1"), forge.new_rsa_key("ext-2")


async def test_external_tokens_are_accepted_with_one_jwks_fetch_and_a_refetch_on_rotation(
    sqlite_url, external_keys
):
    """Tokens of the external issuer work; the JWKS is fetched once for many tokens, and
    again when a token names a key published after that fetch."""
    first_key, second_key = external_keys
    issuer = ExternalIssuer(first_key)
    async with external_gateway(sqlite_url, issuer, jwks_refresh_min_seconds=0) as client:
        for _ in range(3):
            response = await get(client, issuer.token(first_key))
            assert response.status_code == 200, response.text
        assert issuer.fetches == 1

        issuer.keys.append(second_key)  # the issuer rotates
        assert (await get(client, issuer.token(second_key))).status_code == 200
        assert issuer.fetches == 2
        assert (await get(client, issuer.token(first_key))).status_code == 200
        assert issuer.fetches == 2


async def test_external_tokens_are_held_to_issuer_audience_and_scope(sqlite_url, external_keys):
    """The external issuer's tokens pass the same checks as built-in ones: its ``iss``,
    this gateway's ``aud``, a key from its JWKS, and the route's scope."""
    first_key, _ = external_keys
    issuer = ExternalIssuer(first_key)
    async with external_gateway(sqlite_url, issuer) as client:
        assert (await get(client, issuer.token(first_key))).status_code == 200
        refused = {
            "built-in issuer": forge.sign(first_key, forge.claims(issuer="http://127.0.0.1:8000")),
            "wrong audience": issuer.token(first_key, aud="another-api"),
            "key not in the JWKS": issuer.token(forge.new_rsa_key("ext-rogue")),
        }
        for case, token in refused.items():
            response = await get(client, token)
            assert response.status_code == 401, case
            assert 'error="invalid_token"' in response.headers["www-authenticate"], case
        response = await get(client, issuer.token(first_key, scope="usage:write"))
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"


async def test_jwks_refetch_on_unknown_kid_is_throttled(sqlite_url, external_keys, clock):
    """Within ``jwks_refresh_min_seconds`` of a fetch, unknown ``kid`` values are refused
    without fetching again (a flood of them costs nothing); after it, one refetch picks
    up a key the issuer has added."""
    first_key, second_key = external_keys
    issuer = ExternalIssuer(first_key)
    async with external_gateway(sqlite_url, issuer, jwks_refresh_min_seconds=60) as client:
        assert (await get(client, issuer.token(first_key))).status_code == 200
        assert issuer.fetches == 1

        issuer.keys.append(second_key)
        for n in range(5):
            junk = forge.sign(second_key, forge.claims(issuer=EXTERNAL_ISSUER), kid=f"junk-{n}")
            assert (await get(client, junk)).status_code == 401
        assert (await get(client, issuer.token(second_key))).status_code == 401
        assert issuer.fetches == 1

        clock.now += 61
        assert (await get(client, issuer.token(second_key))).status_code == 200
        assert issuer.fetches == 2


async def test_a_key_the_issuer_withdraws_stops_being_trusted(sqlite_url, external_keys, clock):
    """The cached JWKS is not kept forever: once it is older than its maximum age it is
    fetched again, and a key no longer published no longer verifies tokens."""
    first_key, second_key = external_keys
    issuer = ExternalIssuer(first_key, second_key)
    async with external_gateway(sqlite_url, issuer) as client:
        assert (await get(client, issuer.token(first_key))).status_code == 200
        issuer.keys.remove(first_key)  # e.g. compromised

        clock.now += 601
        assert (await get(client, issuer.token(first_key))).status_code == 401
        assert (await get(client, issuer.token(second_key))).status_code == 200
        assert issuer.fetches == 2


async def test_an_unreachable_jwks_refuses_tokens_without_failing_the_request(
    sqlite_url, external_keys
):
    """If the JWKS cannot be fetched, tokens are refused with 401 (not a 5xx)."""
    first_key, _ = external_keys

    class Down(ExternalIssuer):
        def handle(self, request):
            self.fetches += 1
            return httpx.Response(503)

    issuer = Down(first_key)
    async with external_gateway(sqlite_url, issuer) as client:
        response = await get(client, issuer.token(first_key))
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
    assert issuer.fetches == 1  # refused because the JWKS could not be had, not otherwise


async def test_the_builtin_token_endpoint_refuses_in_external_mode(sqlite_url, external_keys):
    """With an external issuer this gateway grants no tokens: a clear RFC 6749 error
    naming the issuer to ask, not a crash, and never a token."""
    issuer = ExternalIssuer(*external_keys)
    async with external_gateway(sqlite_url, issuer) as client:
        credentials = await client.container.clients.create("ops", ["billing:read"])
        response = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(credentials.client_id, credentials.client_secret),
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "unsupported_grant_type"
        assert EXTERNAL_ISSUER in body["error_description"]
        assert "access_token" not in body
        assert response.headers["cache-control"] == "no-store"
        # Nor does it publish keys or metadata of its own: the external issuer's count.
        for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
            published = await client.get(path)
            assert published.status_code == 404, path
            assert published.json()["code"] == "not_found"
