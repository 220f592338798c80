"""How the page's routes answer: templates with the page's headers, refusals as pages,
links back to the page, and the template engine."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import StrictUndefined
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from canonical import correlation
from experience_apis.finance.page.assets import CSP, SCRIPT, STYLE, TEMPLATES
from experience_apis.finance.page.formatting import age, amount

__all__ = ["PAGE_HEADERS", "here", "page", "refused", "template_config", "with_query"]

# Pages hold finance data: never cached, never framed, only their own inline assets.
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP}


def page(name: str, context: dict[str, Any], status: int = 200, **kwargs) -> Template:
    return Template(name, context=context, status_code=status, headers=PAGE_HEADERS, **kwargs)


def refused(status: int, title: str, detail: str, code: str) -> Template:
    context = {
        "title": title,
        "detail": detail,
        "status": status,
        "code": code,
        "correlation_id": correlation.current(),
    }
    return page("error.html", context, status)


def here(request: Request) -> str:
    """The path and query the request asked for."""
    return request.url.path + ("?" + request.url.query if request.url.query else "")


def with_query(path: str, **params: str) -> str:
    """``path`` with ``params`` set, and the previous action's notice dropped."""
    parts = urlsplit(path)
    query = dict(parse_qsl(parts.query))
    for name in ("notice", "exception", "reason"):
        query.pop(name, None)
    query.update({k: v for k, v in params.items() if v})
    return parts.path + ("?" + urlencode(query) if query else "")


def template_config() -> TemplateConfig:
    """The app's template engine: the page's templates, its inline assets and filters;
    autoescaped, and strict about undefined names (a typo fails, it does not blank)."""

    def configure(engine: JinjaTemplateEngine) -> None:
        engine.engine.undefined = StrictUndefined
        engine.engine.globals.update(style=STYLE, script=SCRIPT)
        engine.engine.filters.update(amount=amount, age=age)

    return TemplateConfig(
        directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=configure
    )
