"""Schemathesis against every committed contract, in-process, on a throwaway database.

The schemas are loaded from the committed files (what clients download), not from the app,
and every operation runs Schemathesis' default checks (no 5xx; status codes, content types,
headers and bodies as documented; schema-valid data accepted, schema-invalid data
rejected; missing required headers refused; 405 with ``Allow`` for undocumented methods)
over the examples, coverage and fuzzing phases, positive and negative data.

One setting differs from the defaults, on purpose: ``positive_data_acceptance`` also
accepts 422. In this API 422 is the answer to *well-formed* input that current state
refuses: a body naming master data that does not exist (an unknown legal entity, plan or
item), or an ``Idempotency-Key`` first used with another payload (Schemathesis reuses key
values across cases). No JSON Schema can state those, so schema-valid data may meet them.
A 400 on schema-valid data stays a failure: 400 means "does not match the contract".

Every case runs authenticated, the way a real client is: an auth provider obtains an
access token from the token endpoint (client credentials grant) for a registered client
holding every first-party scope (for the Partner API, a partner client of the demo
partner Northwind: that API answers partner tokens only). Schemathesis' ``ignored_auth``
check then replays secured operations without a token and with a forged one and fails
unless they are refused — but that check only knows API-key and HTTP schemes, so a
second run below sends every secured operation's generated requests without a token and
requires the 401 Bearer challenge itself. Rate limits are set high so that fuzzing volume
is not mistaken for abuse.

The run is deterministic (a fixed seed); set ``METERLINE_FUZZ_SEED`` to explore others.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import get_client

from gateway.app import create_app
from gateway.contracts import CONTRACTS_DIR
from gateway.demo import seed
from gateway.settings import Settings
from gateway.wiring import build_container
from tests.support.app import UNLIMITED
from tests.support.auth import OPERATOR_SCOPES
from tests.support.databases import throwaway_sqlite

POSITIVE_DATA_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": int(os.environ.get("METERLINE_FUZZ_SEED", "20261121")),
            "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_DATA_STATUSES}},
        }
    )


SCHEMAS = {
    path.name.removesuffix(".v1.yaml"): schemathesis.openapi.from_path(path, config=_config())
    for path in sorted(CONTRACTS_DIR.glob("*.v1.yaml"))
}


def _fuzz_app():
    """The gateway on a migrated SQLite file seeded with the demo data, so that reads and
    writes sometimes hit real customers, plans, items and legal entities, plus the
    credentials of a registered client. Built once, at collection: Schemathesis already
    authenticates while it collects the coverage cases."""
    directory = Path(tempfile.mkdtemp(prefix="meterline-fuzz-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)

    async def prepare() -> tuple[str, dict[str, tuple[str, str]]]:
        async with throwaway_sqlite(directory) as url:
            container = build_container(Settings.from_env({}, database_url=url))
            try:
                await seed(container)
                fuzzer = await container.clients.create("contract fuzzer", list(OPERATOR_SCOPES))
                partner = await container.clients.create(
                    "contract fuzzer (partner)", ["partner:read"], partner_id="prt_northwind"
                )
            finally:
                await container.aclose()
            return url, {
                "operator": (fuzzer.client_id, fuzzer.client_secret),
                "partner": (partner.client_id, partner.client_secret),
            }

    url, credentials = asyncio.run(prepare())
    app = create_app(Settings.from_env({}, database_url=url, **UNLIMITED))
    return app, credentials


APP, CREDENTIALS = _fuzz_app()


class OAuthClientCredentials:
    """Tokens from the gateway's own token endpoint, as a registered client gets them."""

    client = "operator"

    def get(self, case, context):
        client_id, secret = CREDENTIALS[self.client]
        with get_client(APP) as client:
            response = client.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


class PartnerClientCredentials(OAuthClientCredentials):
    client = "partner"


# APIs answering partner tokens only (a partner claim is required).
PARTNER_APIS = {"experience-partner"}

for _name, _schema in SCHEMAS.items():
    _schema.auth()(PartnerClientCredentials if _name in PARTNER_APIS else OAuthClientCredentials)


@pytest.fixture(scope="module")
def app():
    return APP


def _unauthenticated_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": int(os.environ.get("METERLINE_FUZZ_SEED", "20261121")),
            "generation": {"mode": "positive"},
        }
    )


# The same contracts, no auth provider: only the operations that declare security.
SECURED = r"^/(system|process|experience)/"
UNAUTHENTICATED = {
    path.name.removesuffix(".v1.yaml"): schemathesis.openapi.from_path(
        path, config=_unauthenticated_config()
    ).include(path_regex=SECURED)
    for path in sorted(CONTRACTS_DIR.glob("*.v1.yaml"))
    if path.name.startswith(("system-", "process-", "experience-"))
}


@schemathesis.pytest.parametrize(**SCHEMAS)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_contract(case, app):
    case.call_and_validate(app=app)


@schemathesis.pytest.parametrize(**UNAUTHENTICATED)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_secured_operations_refuse_calls_without_a_token(case, app):
    assert case.operation.definition.raw.get("security"), "secured paths declare security"
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(app=app)
    assert response.status_code == 401, (response.status_code, response.text)
    headers = {name.lower(): value for name, value in response.headers.items()}
    challenge, content_type = headers["www-authenticate"], headers["content-type"]
    assert str(challenge).find('Bearer realm="meterline"') >= 0, challenge
    assert "application/problem+json" in str(content_type)
    assert response.json()["code"] == "invalid_token"
