"""``create_app``: the gateway assembling the three layers behind one front door.

Order of the edge, outermost first: correlation ID → security headers → CORS → routing →
authentication and scopes → rate limits → handlers; every error leaves as problem+json."""

from __future__ import annotations

import gc
import sys

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme, Server
from litestar.routes import HTTPRoute

from canonical.access import SCOPES, SECURITY_SCHEME
from experience_apis.finance.page.routes import router as finance_page_router
from experience_apis.finance.page.routes import template_config as finance_page_templates
from experience_apis.finance.routes import router as finance_router
from experience_apis.partner.routes import router as partner_router
from experience_apis.portal.routes import router as portal_router
from gateway import health, openapi_routes
from gateway.auth.middleware import PUBLIC, AuthenticationMiddleware, requirement_of
from gateway.auth.routes import router as oauth_router
from gateway.auth.server import TOKEN_PATH
from gateway.correlation import CorrelationMiddleware
from gateway.edge import JsonBodyMiddleware, SecurityHeadersMiddleware, check_issuer
from gateway.logs import configure_logging
from gateway.problems import exception_handlers
from gateway.rate_limit import RateLimitMiddleware
from gateway.settings import Settings
from gateway.wiring import Container, build_container
from process_apis.billing.routes import router as billing_process_router
from process_apis.exceptions.routes import router as exceptions_router
from process_apis.lineage.routes import router as lineage_router
from process_apis.reconciliation.routes import router as reconciliation_router
from process_apis.revenue.routes import router as revenue_router
from process_apis.usage.routes import router as usage_router
from system_apis.billing.routes import router as billing_system_router
from system_apis.crm.routes import router as crm_router
from system_apis.erp.routes import router as erp_router
from system_apis.tax.routes import router as tax_router

__all__ = ["API_ROUTERS", "create_app"]

# Every API the gateway serves, in contract order: (contract name, router).
# Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000
# Seconds a thread may hold the GIL while another waits (CPython's default is 0.005).
GIL_SWITCH_SECONDS = 0.001

API_ROUTERS = [
    ("system-crm", crm_router),
    ("system-billing", billing_system_router),
    ("system-tax", tax_router),
    ("system-erp", erp_router),
    ("process-usage", usage_router),
    ("process-billing", billing_process_router),
    ("process-exceptions", exceptions_router),
    ("process-reconciliation", reconciliation_router),
    ("process-lineage", lineage_router),
    ("process-revenue", revenue_router),
    ("experience-portal", portal_router),
    ("experience-partner", partner_router),
    ("experience-finance", finance_router),
    ("gateway-health", health.router),
    ("gateway-oauth", oauth_router),
]

# Headers browsers may send to, and read from, the APIs when CORS is on.
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Correlation-ID"]
CORS_EXPOSE_HEADERS = [
    "X-Correlation-ID",
    "Idempotent-Replayed",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "Location",
]

VERSION = "1.0.0"


def _fix_allow_on_options(app: Litestar) -> None:
    """Litestar 2.x bug (litestar-org/litestar#4169, fixed in v3): a Router registers its
    handlers one by one, and the automatic OPTIONS handler of a path keeps pointing at the
    route as it was when the path got its first handler, so ``Allow`` lists only that
    handler's methods. Point each automatic handler at the final route."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = handler.fn
            if getattr(fn, "__name__", "") != "options_handler" or not fn.__closure__:
                continue
            for cell in fn.__closure__:
                if isinstance(cell.cell_contents, HTTPRoute):
                    cell.cell_contents = route


def security_scheme(settings: Settings) -> SecurityScheme:
    """The OAuth 2.0 client credentials scheme every contract declares."""
    token_url = (
        TOKEN_PATH
        if not settings.oauth_external_issuer
        else settings.oauth_external_issuer.rstrip("/") + TOKEN_PATH
    )
    return SecurityScheme(
        type="oauth2",
        description="OAuth 2.0 client credentials; send the access token as a Bearer token.",
        flows=OAuthFlows(client_credentials=OAuthFlow(token_url=token_url, scopes=dict(SCOPES))),
    )


def _check_declarations(app: Litestar) -> None:
    """Every route states its scopes or that it is public; nothing is open by omission."""
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if isinstance(handler, HTTPRouteHandler):
                    requirement_of(handler)


def _settle_heap() -> None:
    """Move everything built at startup (routes, schemas, SQLAlchemy metadata: hundreds of
    thousands of objects that live as long as the process) out of the collector's reach,
    and collect the young generation less often. Ingest allocates a few objects per
    event; without this, full collections rescanning the startup heap cost more than
    storing the events.

    Also hand the GIL over sooner: the ingest writer thread needs it back after every
    SQLite call, and would otherwise wait up to 5 ms each time for the event loop."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings | None = None, container: Container | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    check_issuer(settings)
    container = container or build_container(settings)
    configure_logging(settings.log_level)
    cors_origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]

    async def close_container() -> None:
        await container.aclose()

    app = Litestar(
        route_handlers=[
            *(router for _, router in API_ROUTERS),
            openapi_routes.router,
            finance_page_router,
        ],
        template_config=finance_page_templates(),
        dependencies=container.dependencies(),
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        middleware=[AuthenticationMiddleware, RateLimitMiddleware(), JsonBodyMiddleware],
        cors_config=CORSConfig(
            allow_origins=cors_origins,
            allow_methods=["GET", "POST", "PUT", "OPTIONS"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_credentials=False,
            max_age=600,
        )
        if cors_origins
        else None,
        on_startup=[_settle_heap, container.start_background_work],
        on_shutdown=[close_container],
        openapi_config=OpenAPIConfig(
            title="Meterline",
            version=VERSION,
            servers=[Server(url="/")],
            path="/schema",
            components=Components(security_schemes={SECURITY_SCHEME: security_scheme(settings)}),
            openapi_router=Router(
                "/schema", route_handlers=[], include_in_schema=False, opt=PUBLIC
            ),
        ),
        debug=False,
    )
    app.state.container = container
    app.state.token_verifier = container.token_verifier
    app.state.rate_limits = container.rate_limits
    _fix_allow_on_options(app)
    _check_declarations(app)
    # Outermost, around Litestar's own exception handling, so that routing errors (404,
    # 405) and oversized bodies carry the correlation ID and security headers too.
    app.asgi_handler = CorrelationMiddleware(
        SecurityHeadersMiddleware(app.asgi_handler, hsts=settings.hsts)
    )
    return app
