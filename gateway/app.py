"""``create_app``: the gateway assembling the three layers behind one front door.

Order of the edge, outermost first: correlation ID → (authentication and rate limiting
plug in here) → routing → handlers; every error leaves as problem+json."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Server
from litestar.routes import HTTPRoute

from experience_apis.portal.routes import router as portal_router
from gateway import health, openapi_routes
from gateway.correlation import CorrelationLogFilter, CorrelationMiddleware
from gateway.problems import exception_handlers
from gateway.settings import Settings
from gateway.wiring import Container, build_container
from process_apis.billing.routes import router as billing_process_router
from process_apis.exceptions.routes import router as exceptions_router
from process_apis.usage.routes import router as usage_router
from system_apis.billing.routes import router as billing_system_router
from system_apis.crm.routes import router as crm_router
from system_apis.erp.routes import router as erp_router
from system_apis.tax.routes import router as tax_router

__all__ = ["API_ROUTERS", "create_app"]

# Every API the gateway serves, in contract order: (contract name, router).
API_ROUTERS = [
    ("system-crm", crm_router),
    ("system-billing", billing_system_router),
    ("system-tax", tax_router),
    ("system-erp", erp_router),
    ("process-usage", usage_router),
    ("process-billing", billing_process_router),
    ("process-exceptions", exceptions_router),
    ("experience-portal", portal_router),
    ("gateway-health", health.router),
]

VERSION = "1.0.0"


def _configure_logging(level: str) -> None:
    root = logging.getLogger("meterline")
    if not any(isinstance(f, CorrelationLogFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(CorrelationLogFilter())
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"
            )
        )
        root.addHandler(handler)
    root.setLevel(level)


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


def create_app(settings: Settings | None = None, container: Container | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    container = container or build_container(settings)
    _configure_logging(settings.log_level)

    async def close_container() -> None:
        await container.aclose()

    app = Litestar(
        route_handlers=[*(router for _, router in API_ROUTERS), openapi_routes.router],
        dependencies=container.dependencies(),
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        on_shutdown=[close_container],
        openapi_config=OpenAPIConfig(
            title="Meterline",
            version=VERSION,
            servers=[Server(url="/")],
            path="/schema",
        ),
        debug=False,
    )
    app.state.container = container
    _fix_allow_on_options(app)
    # Outermost, around Litestar's own exception handling, so that routing errors (404,
    # 405) and oversized bodies carry the correlation ID too.
    app.asgi_handler = CorrelationMiddleware(app.asgi_handler)
    return app
