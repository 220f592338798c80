"""The OAuth client registry and its ``meterline clients`` / ``meterline keys`` commands:
secrets are stored only as Argon2id hashes and shown once, a new secret retires the old
one, partner clients hold only tenant-filtered scopes, and listings never show secrets."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from click.testing import CliRunner

from canonical import errors
from gateway.auth import clients as clients_module
from gateway.auth.tables import oauth_clients
from gateway.cli import main
from tests.support import forge
from tests.support.app import gateway_client
from tests.support.databases import throwaway_sqlite

TOKEN = "/oauth/token"
GRANT = {"grant_type": "client_credentials"}


async def test_secrets_are_stored_only_as_argon2id_hashes(database_url, monkeypatch):
    """With the production hasher: the clear secret appears in no column of the client's
    row, the stored value is an Argon2id hash of it (RFC 9106 parameters), and the
    registry hands the secret out only at creation."""
    monkeypatch.setattr(clients_module, "_hasher", PasswordHasher())
    async with gateway_client(database_url, authenticated=False) as client:
        registry = client.container.clients
        issued = await registry.create("ingest", ["usage:write"])
        assert len(issued.client_secret) >= 32

        async with client.container.sessions() as session:
            row = (
                await session.execute(
                    sa.select(oauth_clients).where(oauth_clients.c.client_id == issued.client_id)
                )
            ).one()
        for column, value in row._mapping.items():
            assert issued.client_secret not in str(value), column
        assert row.secret_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert PasswordHasher().verify(row.secret_hash, issued.client_secret)

        listed = {c.client_id: c for c in await registry.list()}
        assert not hasattr(listed[issued.client_id], "client_secret")


async def test_reset_secret_invalidates_the_old_one(sqlite_url):
    """After ``reset_secret`` the old secret is ``invalid_client`` at once and the new one
    obtains tokens; the client keeps its id and scopes."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        registry = client.container.clients
        old = await registry.create("ingest", ["usage:write"])
        new = await registry.reset_secret(old.client_id)
        assert (new.client_id, new.scopes) == (old.client_id, old.scopes)
        assert new.client_secret != old.client_secret

        refused = await client.post(TOKEN, data=GRANT, auth=(old.client_id, old.client_secret))
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        accepted = await client.post(TOKEN, data=GRANT, auth=(new.client_id, new.client_secret))
        assert accepted.status_code == 200, accepted.text

        with pytest.raises(errors.NotFound):
            await registry.reset_secret("cli_nobody")


async def test_registration_rules(sqlite_url):
    """Partner clients may hold only portal:read and partner:read, and need a partner
    id; every client needs known scopes, at least one; client ids are unique."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        registry = client.container.clients
        partner = await registry.create(
            "north", ["portal:read", "partner:read"], partner_id="prt_n"
        )
        assert partner.partner_id == "prt_n"

        refused = [
            ({"scopes": ["billing:read"], "partner_id": "prt_n"}, "partner"),
            ({"scopes": ["portal:read", "system:read"], "partner_id": "prt_n"}, "partner"),
            ({"scopes": ["portal:read"], "partner_id": ""}, "partner"),
            ({"scopes": ["portal:read"], "partner_id": "  "}, "partner"),
            ({"scopes": ["billing:reed"]}, "unknown scopes"),
            ({"scopes": []}, "at least one scope"),
        ]
        for arguments, message in refused:
            with pytest.raises(errors.InvalidRequest, match=message):
                await registry.create("refused", arguments.pop("scopes"), **arguments)
        assert [c.name for c in await registry.list()] == ["north"]

        with pytest.raises(errors.Conflict):
            await registry.create("again", ["portal:read"], client_id=partner.client_id)


# --- The command line ------------------------------------------------------------------


@pytest.fixture
def cli_database(tmp_path, monkeypatch):
    """A migrated throwaway SQLite database that the ``meterline`` command uses."""

    async def migrated() -> str:
        async with throwaway_sqlite(tmp_path) as url:
            return url

    url = asyncio.run(migrated())
    monkeypatch.delenv("METERLINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def meterline(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def token_request(url: str, client_id: str, secret: str) -> tuple[int, dict]:
    async def request():
        async with gateway_client(url, authenticated=False) as client:
            response = await client.post(TOKEN, data=GRANT, auth=(client_id, secret))
            return response.status_code, response.json()

    return asyncio.run(request())


def test_cli_creates_a_client_whose_secret_works_and_is_never_listed(cli_database):
    """``clients create --json`` prints the credentials once and they work at the token
    endpoint; ``clients list`` shows the client but neither its secret nor its hash."""
    created = meterline(
        "clients", "create", "--name", "Product service", "--scopes", "usage:write", "--json"
    )
    assert created.exit_code == 0, created.output
    credentials = json.loads(created.stdout)
    assert credentials["scopes"] == ["usage:write"] and credentials["partner_id"] is None
    secret = credentials["client_secret"]

    status, body = token_request(cli_database, credentials["client_id"], secret)
    assert status == 200, body
    assert body["scope"] == "usage:write"

    other = meterline("clients", "create", "--name", "Portal", "--scopes", "portal:read")
    assert other.exit_code == 0, other.output
    assert "client_secret:" in other.stdout

    listing = meterline("clients", "list")
    assert listing.exit_code == 0, listing.output
    assert credentials["client_id"] in listing.output
    assert "Product service" in listing.output and "Portal" in listing.output
    assert secret not in listing.output
    assert "argon2" not in listing.output
    other_secret = other.stdout.split("client_secret:", 1)[1].split()[0]
    assert other_secret not in listing.output


def test_cli_refuses_a_partner_client_with_first_party_scopes(cli_database):
    """``--partner`` with ``billing:read`` fails with a message and registers nothing."""
    result = meterline(
        "clients", "create", "--name", "Sneaky", "--scopes", "billing:read", "--partner", "prt_x"
    )
    assert result.exit_code != 0
    assert "partner" in result.output
    assert "Sneaky" not in meterline("clients", "list").output


def test_cli_reset_secret_disable_and_key_rotation(cli_database):
    """``reset-secret`` retires the old secret, ``disable`` stops token issuance, and
    ``keys rotate`` makes the printed key the one new tokens are signed with."""
    created = meterline("clients", "create", "--name", "Ops", "--scopes", "billing:read", "--json")
    old = json.loads(created.stdout)
    client_id = old["client_id"]

    reset = meterline("clients", "reset-secret", client_id, "--json")
    assert reset.exit_code == 0, reset.output
    new = json.loads(reset.stdout)
    assert new["client_id"] == client_id and new["client_secret"] != old["client_secret"]
    assert token_request(cli_database, client_id, old["client_secret"])[0] == 401

    rotated = meterline("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    kid = rotated.output.split()[-1]
    status, body = token_request(cli_database, client_id, new["client_secret"])
    assert status == 200, body
    assert forge.decode_segment(body["access_token"], 0)["kid"] == kid

    disabled = meterline("clients", "disable", client_id)
    assert disabled.exit_code == 0, disabled.output
    status, body = token_request(cli_database, client_id, new["client_secret"])
    assert status == 400 and "access_token" not in body
