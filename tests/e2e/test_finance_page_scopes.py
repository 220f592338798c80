"""Signing in grants the page's scopes the client holds, in one check of its secret (an
Argon2 hash, deliberately slow): a read-only client is not asked twice. Over HTTP, in
process."""

from __future__ import annotations

from gateway.auth.clients import OAuthClient
from tests.support.app import gateway_client
from tests.support.auth import issue_token
from tests.support.finance_page import SESSION, sign_in


async def test_a_read_only_client_signs_in_with_one_secret_check(sqlite_url, monkeypatch):
    checks = 0
    check = OAuthClient.check_client_secret

    def counted(self, secret: str) -> bool:
        nonlocal checks
        checks += 1
        return check(self, secret)

    monkeypatch.setattr(OAuthClient, "check_client_secret", counted)
    async with gateway_client(sqlite_url, authenticated=False) as client:
        clients = client.container.clients
        reader = await clients.create("auditor", ["finance:read", "billing:read"])
        answer = await sign_in(client, reader.client_id, reader.client_secret)
        assert answer.status_code == 303, answer.text
        assert checks == 1
        page = await client.get("/finance")
        assert page.status_code == 200 and "read only" in page.text

        # finance:write alone is no way onto the page.
        writer = await clients.create("writer", ["finance:write"])
        client.cookies.clear()
        answer = await sign_in(client, writer.client_id, writer.client_secret)
        assert answer.status_code == 403 and "finance:read" in answer.text
        assert SESSION not in {c.split("=")[0] for c in answer.headers.get_list("set-cookie")}


async def test_the_token_endpoint_still_refuses_a_scope_the_client_lacks(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        reader = await client.container.clients.create("auditor", ["finance:read"])
        answer = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": reader.client_id,
                "client_secret": reader.client_secret,
                "scope": "finance:read finance:write",
            },
        )
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"
        assert await issue_token(client, reader.client_id, reader.client_secret)
