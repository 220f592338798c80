"""Schemathesis over the current system-billing / system-tax contracts (built from code)."""
import asyncio
from pathlib import Path
import schemathesis
from hypothesis import HealthCheck, settings
import pytest
from gateway.app import create_app
from gateway.contracts import build_contracts, render_yaml
from gateway.demo import seed
from gateway.settings import Settings
from gateway.wiring import build_container
from tests.support.databases import throwaway_sqlite

DIR = Path("/tmp/stcheck/contracts"); DIR.mkdir(exist_ok=True)
_app0 = create_app(Settings.from_env({}, database_url="sqlite+aiosqlite:////tmp/stcheck/unused.db"))
docs = build_contracts(_app0)
for name in ("system-billing", "system-tax"):
    (DIR / f"{name}.v1.yaml").write_text(render_yaml(docs[name]))
SCHEMAS = {n: schemathesis.openapi.from_path(DIR / f"{n}.v1.yaml") for n in ("system-billing", "system-tax")}

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    directory = tmp_path_factory.mktemp("st")
    async def prepare():
        async with throwaway_sqlite(directory) as url:
            c = build_container(Settings.from_env({}, database_url=url))
            try:
                await seed(c)
            finally:
                await c.aclose()
            return url
    url = asyncio.run(prepare())
    return create_app(Settings.from_env({}, database_url=url))

@schemathesis.pytest.parametrize(**SCHEMAS)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api(case, app):
    case.call_and_validate(app=app)
