"""Forging access tokens for tests: well-formed RFC 9068 JWTs signed with any key, and
the malformed ones an attacker would try (``alg: none``, HS256 keyed with the public RSA
key), assembled by hand where no JOSE library would produce them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def new_rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


def claims(
    *,
    issuer: str,
    audience: str = "meterline",
    scope: str = "billing:read",
    client_id: str = "cli_forged",
    ttl: int = 300,
    now: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Claims an RFC 9068 access token of this gateway carries; ``extra`` overrides or
    adds (a value of ``None`` removes the claim)."""
    now = int(time.time()) if now is None else now
    values: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "scope": scope,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + ttl,
    }
    values.update(extra)
    return {name: value for name, value in values.items() if value is not None}


def sign(key: RSAKey, payload: dict[str, Any], **header: Any) -> str:
    """An RS256 JWS of ``payload``; the header says ``typ: at+jwt`` and the key's ``kid``
    unless told otherwise (a header value of ``None`` removes that member)."""
    values = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid, **header}
    values = {name: value for name, value in values.items() if value is not None}
    return jwt.encode(values, payload, key, algorithms=["RS256"])


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand, whatever its header says."""
    return f"{_segment(header)}.{_segment(payload)}.{b64url(signature)}"


def unsigned(payload: dict[str, Any], **header: Any) -> str:
    """``alg: none``: an empty signature."""
    return compact({"alg": "none", "typ": "at+jwt", **header}, payload)


def hs256(payload: dict[str, Any], secret: bytes, **header: Any) -> str:
    """HMAC-SHA256 with ``secret`` as the key (the HS/RS confusion attack when ``secret``
    is the verifier's public RSA key)."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'at+jwt', **header})}.{_segment(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def decode_segment(token: str, index: int) -> dict[str, Any]:
    """The decoded header (0) or payload (1) of a compact JWS, unverified."""
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
