"""``TokenVerifier`` on its own: verified tokens are served from a cache until they
expire and no longer; what a token says becomes the ``Caller``, and a partner claim that
cannot be read refuses the token instead of lifting the tenant filter."""

from __future__ import annotations

import pytest
from joserfc._rfc7519 import claims as joserfc_claims

from gateway.auth import tokens
from gateway.auth.tokens import TokenVerifier
from gateway.errors import Unauthenticated
from tests.support import forge
from tests.support.clock import Clock

ISSUER = "https://issuer.test"


class CountingKeys:
    """A key source that counts how often the verifier asks it for a key."""

    def __init__(self, *keys) -> None:
        self.keys = {key.kid: key for key in keys}
        self.lookups = 0

    async def key_for(self, kid: str):
        self.lookups += 1
        return self.keys.get(kid)


@pytest.fixture(scope="module")
def key():
    return forge.new_rsa_key("key_unit")


@pytest.fixture
def clock(monkeypatch):
    """One clock for the verifier's cache and for the JOSE claim checks."""
    clock = Clock(wall=True)
    monkeypatch.setattr(tokens, "time", clock)
    monkeypatch.setattr(joserfc_claims, "time", clock)
    return clock


async def test_a_verified_token_is_served_from_the_cache(key, clock):
    """The second verification of the same token touches no key; another token does."""
    keys = CountingKeys(key)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience="meterline")
    token = forge.sign(key, forge.claims(issuer=ISSUER, now=int(clock.now)))

    first = await verifier.verify(token)
    assert keys.lookups == 1
    second = await verifier.verify(token)
    assert second == first
    assert keys.lookups == 1

    await verifier.verify(forge.sign(key, forge.claims(issuer=ISSUER, now=int(clock.now))))
    assert keys.lookups == 2


async def test_an_expired_token_is_not_served_from_the_cache(key, clock):
    """Past its ``exp`` (and the leeway) a cached token is verified again, and refused."""
    keys = CountingKeys(key)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience="meterline", leeway=30)
    token = forge.sign(key, forge.claims(issuer=ISSUER, now=int(clock.now), ttl=60))
    await verifier.verify(token)
    assert keys.lookups == 1

    clock.now += 59
    await verifier.verify(token)
    assert keys.lookups == 1, "still valid: the cache answers"

    clock.now += 60
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(token)
    assert keys.lookups == 2, "the cache must not answer for an expired token"
    assert "expired" in refused.value.detail


async def test_a_refused_token_is_refused_again(key, clock):
    """Refusals are not cached as successes: a bad token stays bad on every call."""
    keys = CountingKeys(key)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience="meterline")
    token = forge.sign(key, forge.claims(issuer="https://elsewhere.test", now=int(clock.now)))
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await verifier.verify(token)


async def test_the_caller_is_what_the_token_says(key, clock):
    """Client, subject, scopes, partner, token id and expiry come from the claims."""
    verifier = TokenVerifier(CountingKeys(key), issuer=ISSUER, audience="meterline")
    payload = forge.claims(
        issuer=ISSUER,
        now=int(clock.now),
        client_id="cli_partner",
        scope="portal:read partner:read",
        partner_id="prt_north",
    )
    caller = await verifier.verify(forge.sign(key, payload))
    assert caller.client_id == "cli_partner" and caller.subject == "cli_partner"
    assert caller.scopes == {"portal:read", "partner:read"}
    assert caller.partner_id == "prt_north"
    assert caller.token_id == payload["jti"] and caller.expires_at == payload["exp"]

    first_party = await verifier.verify(
        forge.sign(key, forge.claims(issuer=ISSUER, now=int(clock.now)))
    )
    assert first_party.partner_id is None


@pytest.mark.parametrize("partner_id", ["", 42, ["prt_a"], {"id": "prt_a"}, True])
async def test_an_unreadable_partner_claim_refuses_the_token(key, clock, partner_id):
    """A ``partner_id`` that is not a non-empty string must not yield a first-party
    caller (who would see every tenant)."""
    verifier = TokenVerifier(CountingKeys(key), issuer=ISSUER, audience="meterline")
    payload = forge.claims(
        issuer=ISSUER, now=int(clock.now), scope="portal:read", partner_id=partner_id
    )
    with pytest.raises(Unauthenticated):
        await verifier.verify(forge.sign(key, payload))
