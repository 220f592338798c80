"""Signing-key rotation of the built-in authorization server: old tokens keep working
while their key is in its grace period, new tokens carry the new ``kid``, the JWKS
publishes exactly the keys whose tokens may still be valid, and every gateway instance
sharing the database follows a rotation made by any other."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import sqlalchemy as sa

from canonical.time import utcnow
from gateway.auth import keys as keys_module
from gateway.auth.tables import signing_keys
from tests.support import forge
from tests.support.app import gateway_client
from tests.support.auth import issue_token
from tests.support.clock import Clock

ROUTE = "/process/billing/v1/runs"  # needs billing:read


def kid_of(token: str) -> str:
    return forge.decode_segment(token, 0)["kid"]


async def status(client, token: str) -> int:
    return (await client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})).status_code


async def published(client) -> list[str]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    database_url,
):
    """After ``rotate``: a token issued before (and never seen before) still verifies, new
    tokens carry the new ``kid``, and the JWKS publishes both keys, newest first."""
    async with gateway_client(database_url, authenticated=False) as client:
        credentials = await client.container.clients.create("ops", ["billing:read"])
        secret = (credentials.client_id, credentials.client_secret)
        used_before = await issue_token(client, *secret)
        unused_before = await issue_token(client, *secret)
        old_kid = kid_of(used_before)
        assert await status(client, used_before) == 200
        assert await published(client) == [old_kid]

        new_kid = await client.container.keyring.rotate()
        assert new_kid != old_kid

        assert await status(client, unused_before) == 200
        after = await issue_token(client, *secret)
        assert kid_of(after) == new_kid
        assert await status(client, after) == 200
        assert await published(client) == [new_kid, old_kid]


async def test_a_retired_key_past_its_grace_is_withdrawn_and_its_tokens_refused(database_url):
    """Once a retired key's grace has passed it leaves the JWKS (on a fresh instance at
    once, on this one at the next rotation, which also deletes it) and tokens it signed
    are refused as signed by an unknown key."""
    async with gateway_client(database_url, authenticated=False) as client:
        container = client.container
        credentials = await container.clients.create("ops", ["billing:read"])
        old_token = await issue_token(client, credentials.client_id, credentials.client_secret)
        old_kid = kid_of(old_token)
        new_kid = await container.keyring.rotate()

        async with container.sessions.begin() as session:
            await session.execute(
                signing_keys.update()
                .where(signing_keys.c.kid == old_kid)
                .values(retired_at=utcnow() - timedelta(days=1))
            )

        async with gateway_client(database_url, authenticated=False) as fresh:
            assert await published(fresh) == [new_kid]
            response = await fresh.get(ROUTE, headers={"Authorization": f"Bearer {old_token}"})
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]

        newest = await container.keyring.rotate()
        assert await published(client) == [newest, new_kid]
        async with container.sessions() as session:
            kids = set((await session.execute(sa.select(signing_keys.c.kid))).scalars())
        assert kids == {newest, new_kid}
        assert await status(client, old_token) == 401


async def test_another_instance_accepts_tokens_signed_right_after_a_rotation(database_url):
    """Instance B has just loaded the keys when instance A rotates; a token A then signs
    names a ``kid`` B does not know, and B reloads and accepts it at once (and signs with
    the new key from then on)."""
    async with (
        gateway_client(database_url, authenticated=False) as a,
        gateway_client(database_url, authenticated=False) as b,
    ):
        credentials = await a.container.clients.create("ops", ["billing:read"])
        secret = (credentials.client_id, credentials.client_secret)
        before = await issue_token(a, *secret)
        assert await status(b, before) == 200  # B now holds the keys as they were

        new_kid = await a.container.keyring.rotate()
        after = await issue_token(a, *secret)
        assert kid_of(after) == new_kid
        assert await status(b, after) == 200
        assert new_kid in await published(b)
        assert kid_of(await issue_token(b, *secret)) == new_kid


@contextlib.contextmanager
def counting_key_loads(engine):
    """Counts SELECTs on the signing-key table."""
    loads = []

    def before(conn, cursor, statement, parameters, context, executemany):
        text = statement.lstrip().lower()
        if text.startswith("select") and "signing_keys" in text:
            loads.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield loads
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", before)


async def test_unknown_kids_cost_at_most_one_reload_per_throttle_window(sqlite_url, monkeypatch):
    """A flood of tokens naming unknown keys causes one database reload, not one each;
    once the throttle window has passed, the next unknown ``kid`` may reload again."""
    clock = Clock()
    monkeypatch.setattr(keys_module, "time", clock)
    async with gateway_client(sqlite_url, authenticated=False) as client:
        container = client.container
        key = await container.keyring.signing_key()
        issuer = container.settings.oauth_issuer
        assert await status(client, forge.sign(key, forge.claims(issuer=issuer))) == 200

        junk = forge.new_rsa_key("key_junk")
        with counting_key_loads(container.engine) as loads:
            for n in range(10):
                token = forge.sign(junk, forge.claims(issuer=issuer), kid=f"key_junk_{n}")
                assert await status(client, token) == 401
            assert len(loads) == 1

            clock.now += keys_module.FORCED_RELOAD_MIN_SECONDS + 1
            token = forge.sign(junk, forge.claims(issuer=issuer), kid="key_junk_late")
            assert await status(client, token) == 401
            assert len(loads) == 2
