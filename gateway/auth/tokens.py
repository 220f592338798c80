"""Access-token validation (RFC 9068 §4) for the built-in issuer or an external one.

Only asymmetric signatures (RS256) with a key from the issuer's JWKS are accepted:
``alg: none``, HMAC algorithms (and with them the HS/RS key-confusion attack) are refused
before any key is touched. A verified token is cached until it expires, so the hot path
costs one dictionary lookup."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Protocol

import httpx
import msgspec
from cachetools import TLRUCache
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet

from canonical.access import Caller
from gateway.auth.keys import ALGORITHM, KeyRing
from gateway.errors import Unauthenticated

__all__ = ["KeySource", "LocalKeys", "RemoteJwks", "TokenVerifier"]

ACCEPTED_TYPES = ("at+jwt", "application/at+jwt")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "client_id", "jti")


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Key | None: ...


class LocalKeys:
    """Keys of the built-in authorization server."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def key_for(self, kid: str) -> Key | None:
        return await self._keyring.verification_key(kid)


class RemoteJwks:
    """Keys of an external authorization server, fetched from its JWKS URL, cached, and
    fetched again when a token names a ``kid`` the cache does not hold (key rotation),
    at most once per ``min_interval`` seconds. A cached set older than ``max_age`` is
    fetched again too, so a key the issuer withdraws stops being trusted; if that fetch
    fails, the keys at hand stay in use."""

    def __init__(
        self,
        url: str,
        *,
        min_interval: float = 10.0,
        max_age: float = 600.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._min_interval = min_interval
        self._max_age = max(max_age, min_interval)
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._min_interval:
                return
            self._fetched_at = time.monotonic()
            try:
                response = await self._client.get(self._url)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError):
                # Keep the keys we have; tokens signed by an unknown key stay refused.
                return

    def _find(self, kid: str) -> Key | None:
        if self._keys is not None:
            for key in self._keys:
                if key.kid == kid:
                    return key
        return None

    async def key_for(self, kid: str) -> Key | None:
        stale = self._keys is None or time.monotonic() - self._fetched_at > self._max_age
        if stale:
            await self._refresh()
        key = self._find(kid)
        if key is None and not stale:
            await self._refresh()
            key = self._find(kid)
        return key

    async def aclose(self) -> None:
        await self._client.aclose()


def _header(token: str) -> dict:
    try:
        segment = token.split(".", 1)[0]
        header = msgspec.json.decode(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise Unauthenticated("malformed token") from exc
    if not isinstance(header, dict):
        raise Unauthenticated("malformed token")
    return header


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway: int = 30,
        cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        # Built once: the registry reads the clock when it validates, not when it is made.
        self._claims = jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            **{name: {"essential": True} for name in REQUIRED_CLAIMS if name not in ("iss", "aud")},
        )
        # Entries live until the token's own ``exp``.
        self._cache: TLRUCache[str, Caller] = TLRUCache(
            maxsize=cache_size, ttu=lambda _token, caller, _now: caller.expires_at, timer=time.time
        )

    async def verify(self, token: str) -> Caller:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        caller = await self._verify(token)
        self._cache[token] = caller
        return caller

    async def _verify(self, token: str) -> Caller:
        if token.count(".") != 2:
            raise Unauthenticated("malformed token")
        header = _header(token)
        if header.get("alg") != ALGORITHM:
            # Never echo the header's value: it would land in WWW-Authenticate, where a
            # character outside latin-1 cannot even be encoded.
            raise Unauthenticated(f"the signature algorithm must be {ALGORITHM}")
        if str(header.get("typ", "")).lower() not in ACCEPTED_TYPES:
            raise Unauthenticated("not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        key = await self._keys.key_for(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("signed by an unknown key")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM]).claims
        except BadSignatureError as exc:
            raise Unauthenticated("bad signature") from exc
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("malformed token") from exc
        try:
            self._claims.validate(claims)
        except ExpiredTokenError as exc:
            raise Unauthenticated("expired") from exc
        except (MissingClaimError, InvalidClaimError) as exc:
            # A missing claim, "not yet valid" (nbf), "issued in the future" (iat), wrong
            # iss or aud: joserfc's description says which.
            raise Unauthenticated(str(exc.description)) from exc
        except JoseError as exc:
            raise Unauthenticated("invalid claims") from exc
        scope = claims.get("scope", "")
        partner = claims.get("partner_id")
        if partner is not None and not (isinstance(partner, str) and partner):
            # A partner token whose tenant cannot be read must not pass as a first-party
            # token: that would lift the tenant filter.
            raise Unauthenticated("invalid claim: partner_id")
        return Caller(
            client_id=str(claims["client_id"]),
            subject=str(claims["sub"]),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            partner_id=partner,
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
