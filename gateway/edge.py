"""Edge hardening every response gets, routed or not: security headers, and the
configuration checks that must hold before the gateway takes traffic."""

from __future__ import annotations

import contextlib
import ipaddress
from urllib.parse import urlsplit

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from canonical import errors
from gateway.settings import Settings

__all__ = ["JsonBodyMiddleware", "SecurityHeadersMiddleware", "check_issuer"]

# JSON APIs render nothing: no framing, no sniffing, no referrer, no active content. The
# interactive schema pages (/schema) load their own scripts and keep the browser default.
API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
DOC_PREFIXES = ("/schema",)
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_doc = scope["path"].startswith(DOC_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in API_HEADERS.items():
                    if is_doc and name == "Content-Security-Policy":
                        continue
                    if name not in headers:
                        headers[name] = value
                if self.hsts:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class JsonBodyMiddleware:
    """415 for a body that is not JSON sent to an operation whose contract takes JSON.
    Litestar would otherwise try to parse any body as JSON whatever its Content-Type.
    Operations that read their own body (ingest, the token endpoint) check theirs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._takes_json: dict[int, bool] = {}

    def _json_body(self, handler) -> bool:
        key = id(handler)
        if key not in self._takes_json:
            self._takes_json[key] = "data" in handler.parsed_fn_signature.parameters
        return self._takes_json[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in BODY_METHODS
            and self._json_body(scope["route_handler"])
        ):
            content_type = ""
            for name, value in scope["headers"]:
                if name == b"content-type":
                    content_type = value.decode("latin-1").split(";")[0].strip().lower()
            if content_type and not _is_json(content_type):
                raise errors.UnsupportedMediaType(
                    f"this operation takes application/json, not {content_type}"
                )
        await self.app(scope, receive, send)


def check_issuer(settings: Settings) -> None:
    """OAuth 2.0 requires TLS (RFC 6749 §3.2): the issuer must be https, or loopback for
    a developer's machine."""
    parts = urlsplit(settings.oauth_issuer)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):  # a host name, not an address
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme != "http" or not loopback:
        raise ValueError(
            f"METERLINE_OAUTH_ISSUER={settings.oauth_issuer!r}: the issuer must be an https "
            "URL (or http on a loopback address for local use)"
        )
