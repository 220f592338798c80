"""Authentication and scope authorisation of every routed request.

Runs after routing (it needs the matched handler's declared security) and inside
Litestar's exception handling (so refusals leave as problem+json). A route is public
only when it says so (``opt={"public": True}``); ``create_app`` refuses to start if a
route declares neither scopes nor public access.

The token is a Bearer token in ``Authorization``, for every API route. A browser page's
routes say ``opt={"session_cookie": <name>}`` instead: their token is read from that
cookie only (the page's sign-in put it there), and no other route ever reads cookies."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from canonical.access import SECURITY_SCHEME, Caller
from gateway.auth.tokens import TokenVerifier
from gateway.errors import InsufficientScope, Unauthenticated
from process_apis.audit import acting_as

__all__ = [
    "PUBLIC",
    "AuthenticationMiddleware",
    "Requirement",
    "is_automatic_options",
    "requirement_of",
]

# Probes and contract files: no token, no rate limit.
PUBLIC = {"public": True, "rate_limit": "none"}

# Alternatives (any one suffices), each a set of scopes that must all be held.
Requirement = tuple[frozenset[str], ...]


def is_automatic_options(handler: HTTPRouteHandler) -> bool:
    """Litestar's generated OPTIONS handler (CORS preflight, ``Allow``): neither
    authenticated nor rate limited."""
    return handler.http_methods == {"OPTIONS"} and handler.fn.__name__ == "options_handler"


def requirement_of(handler: HTTPRouteHandler) -> Requirement | None:
    """The scopes a handler demands, or None for a public one."""
    if handler.opt.get("public") or is_automatic_options(handler):
        return None
    alternatives = tuple(
        frozenset(requirement.get(SECURITY_SCHEME, ()))
        for requirement in handler.resolve_security()
    )
    if not alternatives:
        raise LookupError(f"{handler} declares neither scopes nor public access")
    return alternatives


def bearer_token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated()  # no credentials at all


def cookie_token(scope: Scope, name: str) -> str:
    """The access token a page keeps in its session cookie ``name``, parsed as the page's
    own ``request.cookies`` parses it (and cached for it), so the session that
    authenticates is the one its CSRF token is checked against, even when the header
    names the cookie twice."""
    token = ASGIConnection(scope).cookies.get(name)
    if not token:
        raise Unauthenticated()
    return token


async def authenticate(
    scope: Scope, verifier: TokenVerifier, needed: Requirement, *, cookie: str | None = None
) -> Caller:
    token = cookie_token(scope, cookie) if cookie else bearer_token(scope)
    caller = await verifier.verify(token)
    if not any(caller.has_scopes(alternative) for alternative in needed):
        raise InsufficientScope(" ".join(sorted(needed[0])))
    return caller


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._requirements: dict[int, Requirement | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = scope["route_handler"]
            key = id(handler)
            if key not in self._requirements:
                self._requirements[key] = requirement_of(handler)
            needed = self._requirements[key]
            if needed is not None:
                caller = await authenticate(
                    scope,
                    scope["app"].state.token_verifier,
                    needed,
                    cookie=handler.opt.get("session_cookie"),
                )
                scope["auth"] = caller
                # Whatever the request changes is audited as done by this client.
                with acting_as(caller.client_id):
                    await self.app(scope, receive, send)
                return
        await self.app(scope, receive, send)
