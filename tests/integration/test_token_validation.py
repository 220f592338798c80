"""Access-token validation at the gateway (RFC 9068 §4, RFC 6750 §3): every token that is
not a genuine, current access token of this issuer for this audience is refused with 401,
``WWW-Authenticate: Bearer ... error="invalid_token"`` and a problem+json body; a request
without any token gets the bare challenge."""

from __future__ import annotations

import time

import httpx

from tests.support import forge
from tests.support.app import gateway_client

ROUTE = "/process/billing/v1/runs"  # needs billing:read


def assert_invalid_token(response: httpx.Response, case: str) -> None:
    assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="meterline"'), f"{case}: {challenge}"
    assert 'error="invalid_token"' in challenge, f"{case}: {challenge}"
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body = response.json()
    assert body["code"] == "invalid_token" and body["status"] == 401, case
    assert body["type"].endswith("/invalid_token") and body["correlation_id"], case


async def test_forged_and_defective_tokens_are_refused(sqlite_url):
    """Each token differs from a valid one in one respect only, and each is refused; the
    valid one (same forging path, same key) is accepted."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        container = client.container
        key = await container.keyring.signing_key()
        issuer = container.settings.oauth_issuer.rstrip("/")
        now = int(time.time())

        def good(**extra):
            return forge.claims(issuer=issuer, now=now, **extra)

        valid = forge.sign(key, good())
        response = await client.get(ROUTE, headers={"Authorization": f"Bearer {valid}"})
        assert response.status_code == 200, response.text

        impostor = forge.new_rsa_key(key.kid)  # another key that claims the same kid
        public_pem = key.as_pem(private=False)
        signing_input, _, signature = valid.rpartition(".")
        cases = {
            "not a JWT": "not-a-token",
            "two segments": signing_input,
            "garbage segments": "a.b.c",
            "header not JSON": "bm90LWpzb24." + valid.split(".", 1)[1],
            "truncated signature": f"{signing_input}.{signature[:-8]}",
            "payload tampered": ".".join(
                [
                    valid.split(".")[0],
                    forge.b64url(b'{"scope":"billing:read system:write"}'),
                    signature,
                ]
            ),
            "expired": forge.sign(key, good(iat=now - 1000, exp=now - 120)),
            "not yet valid (nbf)": forge.sign(key, good(nbf=now + 600)),
            "issued in the future": forge.sign(key, good(iat=now + 600, exp=now + 900)),
            "wrong issuer": forge.sign(key, good(iss="https://issuer.example")),
            "issuer with trailing slash": forge.sign(key, good(iss=issuer + "/")),
            "wrong audience": forge.sign(key, good(aud="another-api")),
            "audience list without us": forge.sign(key, good(aud=["a", "b"])),
            "no audience": forge.sign(key, good(aud=None)),
            "no expiry": forge.sign(key, good(exp=None)),
            "no client_id": forge.sign(key, good(client_id=None)),
            "no jti": forge.sign(key, good(jti=None)),
            "wrong signature (same kid, other key)": forge.sign(impostor, good()),
            "alg none": forge.unsigned(good(), kid=key.kid),
            "alg none with a signature": forge.unsigned(good(), kid=key.kid) + signature,
            "HS256 keyed with the RSA public key": forge.hs256(good(), public_pem, kid=key.kid),
            "typ JWT": forge.sign(key, good(), typ="JWT"),
            "no typ": forge.sign(key, good(), typ=None),
            "unknown kid": forge.sign(forge.new_rsa_key("key_unknown"), good()),
            "no kid": forge.sign(key, good(), kid=None),
            "kid not a string": forge.compact({"alg": "RS256", "typ": "at+jwt", "kid": 7}, good()),
            "alg RS512": forge.compact({"alg": "RS512", "typ": "at+jwt", "kid": key.kid}, good()),
            "alg outside latin-1": forge.compact({"alg": "雪", "typ": "at+jwt"}, good()),
            "alg with CRLF": forge.compact({"alg": "x\r\nSet-Cookie: a=b"}, good()),
            "header not an object": forge.b64url(b"[1]") + "." + valid.split(".", 1)[1],
        }
        for case, token in cases.items():
            response = await client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})
            assert_invalid_token(response, case)

        for case, header in {
            "Basic scheme": "Basic Y2xpOnNlY3JldA==",
            "Bearer without token": "Bearer ",
            "token without scheme": valid,
        }.items():
            response = await client.get(ROUTE, headers={"Authorization": header})
            assert_invalid_token(response, case)


async def test_missing_token_gets_the_bare_bearer_challenge(sqlite_url):
    """RFC 6750 §3.1: a request with no credentials gets ``Bearer realm=...`` and no error
    code, on every layer; the body is still problem+json."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        for method, path in [
            ("GET", "/system/crm/v1/customers"),
            ("POST", "/process/usage/v1/events"),
            ("GET", ROUTE),
            ("GET", "/experience/portal/v1/invoices/inv_x"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == 'Bearer realm="meterline"'
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "invalid_token"
