"""Obtaining access tokens the way a real client does: register a client, then the
client credentials grant at the token endpoint."""

from __future__ import annotations

import httpx

from canonical.access import PARTNER_SCOPES, SCOPES

# Everything a first-party operator client may hold.
OPERATOR_SCOPES = tuple(s for s in SCOPES if s not in PARTNER_SCOPES or s == "portal:read")


async def issue_token(
    client: httpx.AsyncClient, client_id: str, secret: str, scope: str | None = None
) -> str:
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    response = await client.post("/oauth/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def bearer(
    client: httpx.AsyncClient,
    container,
    scopes=OPERATOR_SCOPES,
    *,
    partner_id: str | None = None,
    name: str = "test client",
) -> dict[str, str]:
    """Authorization headers of a freshly registered client holding ``scopes``."""
    credentials = await container.clients.create(name, list(scopes), partner_id=partner_id)
    token = await issue_token(client, credentials.client_id, credentials.client_secret)
    return {"Authorization": f"Bearer {token}"}
