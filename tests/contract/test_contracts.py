"""The committed contracts: valid OpenAPI, one per API, and exactly what the code builds."""

from __future__ import annotations

import difflib

import msgspec
import pytest
import yaml
from litestar.testing import TestClient
from openapi_spec_validator import validate

from gateway.app import API_ROUTERS, create_app
from gateway.contracts import (
    CONTRACTS_DIR,
    build_contracts,
    contract_path,
    main,
    render_json,
    render_yaml,
)
from gateway.problems import Problem
from gateway.settings import Settings
from tests.support.problems import assert_problem

NAMES = [name for name, _ in API_ROUTERS]
COMMITTED = sorted(CONTRACTS_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # Building the schema never opens the database; the readiness probe is not called.
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('contracts') / 'unused.db'}"
    return create_app(Settings.from_env({}, database_url=url, worker_in_process=False))


@pytest.fixture(scope="module")
def built(app):
    return build_contracts(app)


def test_one_committed_file_per_api_and_no_other():
    assert sorted(path.name for path in COMMITTED) == sorted(f"{name}.v1.yaml" for name in NAMES)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: path.name)
def test_committed_file_is_valid_openapi(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate(document)
    assert document["info"]["title"] == f"Meterline {path.name.removesuffix('.v1.yaml')} API"


@pytest.mark.parametrize("name", NAMES)
def test_no_drift_between_code_and_committed_file(built, name):
    """Fails when a route changed without `make contracts` (review that diff!)."""
    path = contract_path(name)
    assert path.exists(), f"{path.name} missing: run `make contracts`"
    committed = path.read_text(encoding="utf-8")
    fresh = render_yaml(built[name])
    if committed != fresh:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                f"committed/{path.name}",
                f"code/{path.name}",
                n=2,
            )
        )
        pytest.fail(f"contract drift in {path.name}; run `make contracts`:\n{diff[:6000]}")
    assert yaml.safe_load(committed) == built[name]


def test_check_command_passes(capsys):
    assert main(["check"]) == 0, capsys.readouterr().err


def test_every_path_of_the_app_is_in_exactly_one_contract(app, built):
    served = set(app.openapi_schema.to_schema()["paths"])
    in_contracts = [path for document in built.values() for path in document["paths"]]
    assert sorted(in_contracts) == sorted(served)


def test_contracts_state_problems_and_correlation_on_every_response(built):
    for name, document in built.items():
        components = document["components"]
        for path, item in document["paths"].items():
            for method, operation in item.items():
                for status, response in operation["responses"].items():
                    if "$ref" in response:
                        response = components["responses"][response["$ref"].rsplit("/", 1)[1]]
                    where = f"{name}: {method.upper()} {path} {status}"
                    assert "X-Correlation-ID" in response["headers"], where
                    if path == "/oauth/token" and status in ("400", "401", "415"):
                        # RFC 6749 §5.2 fixes the token endpoint's error format; its body
                        # carries the problem members too.
                        assert list(response["content"]) == ["application/json"], where
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/TokenError"}, where
                        token_error = components["schemas"]["TokenError"]["properties"]
                        assert {"error", "type", "status", "correlation_id"} <= set(token_error)
                    elif int(status) >= 400:
                        assert list(response["content"]) == ["application/problem+json"], where
                        assert response["content"]["application/problem+json"]["schema"] == {
                            "$ref": "#/components/schemas/Problem"
                        }, where
                assert "500" in operation["responses"]


def test_problem_schema_matches_the_problem_struct(built):
    (_,), components = msgspec.json.schema_components([Problem])
    struct = components["Problem"]
    for document in built.values():
        stated = document["components"]["schemas"]["Problem"]
        assert set(stated["properties"]) == set(struct["properties"])
        assert stated["required"] == struct["required"]


@pytest.mark.parametrize("name", NAMES)
def test_gateway_serves_the_committed_contract(app, name):
    committed = contract_path(name).read_text(encoding="utf-8")
    with TestClient(app=app) as client:
        as_yaml = client.get(f"/openapi/{name}.v1.yaml")
        as_json = client.get(f"/openapi/{name}.v1.json")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text == committed
    assert as_json.status_code == 200
    assert as_json.json() == yaml.safe_load(committed)
    assert as_json.text == render_json(yaml.safe_load(committed))


def test_unknown_contract_is_a_404_problem(app):
    with TestClient(app=app) as client:
        response = client.get("/openapi/system-nope.v1.yaml")
        index = client.get("/openapi")
    assert_problem(response, 404)
    assert index.status_code == 200
    assert "/openapi/system-crm.v1.yaml" in index.json()["contracts"]
