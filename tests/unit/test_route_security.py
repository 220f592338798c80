"""Every route of every layer says who may call it: either it is public (and then it is a
probe, a contract, the schema or the authorization server itself) or it declares the
OAuth scopes it needs, all of them known. ``create_app`` refuses to start otherwise."""

from __future__ import annotations

import pytest
from litestar import Litestar, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from canonical.access import PARTNER_SCOPES, SCOPES, SECURITY_SCHEME, requires
from gateway import app as app_module
from gateway.app import _check_declarations, create_app
from gateway.auth.middleware import requirement_of
from gateway.settings import Settings

# The finance page's sign-in form is reachable without signing in, by design (ADR 15).
PUBLIC_PREFIXES = (
    "/health/",
    "/openapi",
    "/schema",
    "/oauth/token",
    "/.well-known/",
    "/finance/sign-in",
)


def is_automatic_options(handler: HTTPRouteHandler) -> bool:
    return handler.http_methods == {"OPTIONS"} and handler.fn.__name__ == "options_handler"


def settings(tmp_path) -> Settings:
    return Settings.from_env({}, database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")


@pytest.fixture
async def app(tmp_path):
    app = create_app(settings(tmp_path))
    yield app
    await app.state.container.aclose()


def handlers(app: Litestar):
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if not is_automatic_options(handler):
                    yield route.path, handler


def test_every_route_is_public_by_name_or_declares_known_scopes(app):
    """Public routes are only probes, contracts, schema and OAuth endpoints; every other
    route declares at least one OAuth requirement, each a non-empty set of known scopes
    of the one security scheme."""
    seen = {"public": 0, "protected": 0}
    for path, handler in handlers(app):
        if handler.opt.get("public"):
            assert path.startswith(PUBLIC_PREFIXES), f"{path} is public"
            assert requirement_of(handler) is None
            seen["public"] += 1
            continue
        security = handler.resolve_security()
        assert security, f"{path} {sorted(handler.http_methods)} declares no scopes"
        for requirement in security:
            assert set(requirement) == {SECURITY_SCHEME}, path
            scopes = requirement[SECURITY_SCHEME]
            assert scopes and set(scopes) <= SCOPES.keys(), (path, scopes)
        assert requirement_of(handler) == tuple(frozenset(r[SECURITY_SCHEME]) for r in security)
        seen["protected"] += 1
    assert seen["public"] >= 5 and seen["protected"] >= 40, seen


def test_system_apis_need_system_scopes_and_nothing_else_does(app):
    """A system route can be opened only by a system:* scope, and system:* scopes open
    nothing outside the system APIs."""
    for path, handler in handlers(app):
        needed = requirement_of(handler)
        if needed is None:
            continue
        for alternative in needed:
            system = {s for s in alternative if s.startswith("system:")}
            if path.startswith("/system/"):
                assert system, f"{path} is reachable without a system scope"
            else:
                assert not system, f"{path} asks for {system}"


def test_partner_scopes_open_only_tenant_filtered_routes(app):
    """Whatever a partner client can hold opens only the portal and the Partner API,
    whose services filter by the caller's partner."""
    reachable = {
        path
        for path, handler in handlers(app)
        if (needed := requirement_of(handler)) is not None
        and any(alternative <= PARTNER_SCOPES for alternative in needed)
    }
    assert reachable
    tenant_filtered = ("/experience/portal/", "/experience/partner/")
    assert all(path.startswith(tenant_filtered) for path in reachable), reachable


def bare_app(*route_handlers) -> Litestar:
    return Litestar(
        route_handlers=[Router("/x", route_handlers=list(route_handlers))], openapi_config=None
    )


def test_an_undeclared_route_is_found():
    """The declaration check raises for a handler that declares neither scopes nor
    public access, and accepts it once it declares either."""

    @get("/open-by-omission", sync_to_thread=False)
    def undeclared() -> str:
        return "oops"

    with pytest.raises(LookupError, match="declares neither"):
        _check_declarations(bare_app(undeclared))

    @get("/scoped", security=requires("billing:read"), sync_to_thread=False)
    def scoped() -> str:
        return "ok"

    @get("/probe", opt={"public": True}, sync_to_thread=False)
    def probe() -> str:
        return "ok"

    _check_declarations(bare_app(scoped, probe))


async def test_create_app_refuses_to_start_with_an_undeclared_route(tmp_path, monkeypatch):
    """An API router with one undeclared handler among declared ones stops ``create_app``."""

    @get("/declared", security=requires("billing:read"), sync_to_thread=False)
    def declared() -> str:
        return "ok"

    @get("/forgotten", sync_to_thread=False)
    def forgotten() -> str:
        return "oops"

    rogue = Router("/process/rogue/v1", route_handlers=[declared, forgotten])
    monkeypatch.setattr(app_module, "API_ROUTERS", [*app_module.API_ROUTERS, ("rogue", rogue)])
    with pytest.raises(LookupError, match="forgotten"):
        create_app(settings(tmp_path))


def test_unknown_scopes_cannot_be_declared():
    """``requires`` rejects a scope the gateway does not know (a typo would otherwise
    make a route unreachable, or reachable by a scope nobody meant)."""
    with pytest.raises(ValueError):
        requires("billing:reed")
