"""Schemathesis against every committed contract, in-process, on a throwaway database.

The schemas are loaded from the committed files (what clients get), not from the app, and
every operation is exercised with Schemathesis' default checks (status codes, content
types, headers and bodies conform; valid data accepted, invalid data rejected; no 5xx)
over its examples, coverage and fuzzing phases, positive and negative data.
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.contracts import CONTRACTS_DIR
from gateway.demo import seed
from gateway.settings import Settings
from gateway.wiring import build_container
from tests.support.databases import throwaway_sqlite

SCHEMAS = {
    path.name.removesuffix(".v1.yaml"): schemathesis.openapi.from_path(path)
    for path in sorted(CONTRACTS_DIR.glob("*.v1.yaml"))
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The gateway on a migrated SQLite file seeded with the demo data, so that reads
    sometimes hit real customers, plans, items and legal entities."""
    directory = tmp_path_factory.mktemp("schemathesis")

    async def prepare() -> str:
        async with throwaway_sqlite(directory) as url:
            container = build_container(Settings.from_env({}, database_url=url))
            try:
                await seed(container)
            finally:
                await container.aclose()
            return url

    url = asyncio.run(prepare())
    return create_app(Settings.from_env({}, database_url=url))


@schemathesis.pytest.parametrize(**SCHEMAS)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_contract(case, app):
    case.call_and_validate(app=app)
