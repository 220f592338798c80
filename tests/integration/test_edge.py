"""The gateway's edge: problem+json for every error, correlation IDs, body limits."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from canonical.time import utcnow
from process_apis.tables import usage_events
from tests.support import problems
from tests.support.app import gateway_client


@pytest.fixture
async def client(sqlite_url):
    async with gateway_client(sqlite_url, max_body_bytes=2_000, max_batch_events=3) as client:
        yield client


async def stored_events(client) -> list[str | None]:
    """The correlation IDs of the usage events in the database, one per event."""
    async with client.container.sessions() as session:
        stored = await session.execute(sa.select(usage_events.c.correlation_id))
    return stored.scalars().all()


def assert_problem(response, status: int, code: str) -> dict:
    body = problems.assert_problem(response, status, code)
    assert body["status"] == status
    assert body["type"].endswith(f"/problems/{code}")
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    assert body["instance"] and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


async def test_unknown_route_is_a_404_problem(client):
    assert_problem(await client.get("/nowhere"), 404, "not_found")


async def test_wrong_method_is_a_405_problem(client):
    assert_problem(await client.delete("/process/usage/v1/events"), 405, "method_not_allowed")


async def test_oversized_body_is_a_413_problem(client):
    response = await client.post(
        "/process/usage/v1/events",
        content=b"[" + b" " * 5_000 + b"]",
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_too_many_events_is_a_413_problem_stating_the_limit(client):
    events = [
        {"id": str(i), "source": "s", "event_type": "t", "customer_id": "c"} for i in range(4)
    ]
    body = assert_problem(
        await client.post("/process/usage/v1/events", json=events), 413, "payload_too_large"
    )
    assert "limit is 3" in body["detail"]


async def test_unsupported_content_type_is_a_415_problem(client):
    response = await client.post(
        "/process/usage/v1/events", content=b"a,b", headers={"content-type": "text/csv"}
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_malformed_json_is_a_400_problem_and_stores_nothing(client):
    response = await client.post(
        "/process/usage/v1/events", content=b"[{", headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_body")
    assert await stored_events(client) == []
    assert (await client.get("/process/exceptions/v1/")).json()["data"] == []


async def test_invalid_event_names_the_field(client):
    response = await client.post("/process/usage/v1/events", json=[{"id": 1}])
    body = assert_problem(response, 400, "invalid_events")
    assert "$[0]" in body["detail"]


async def test_body_validation_error_is_a_400_problem(client):
    response = await client.post(
        "/process/billing/v1/runs", json={"period": "2026-13"}, headers={"Idempotency-Key": "x"}
    )
    assert_problem(response, 400, "validation_failed")


async def test_billing_run_without_idempotency_key_is_a_400_problem(client):
    response = await client.post("/process/billing/v1/runs", json={"period": "2026-01"})
    assert_problem(response, 400, "idempotency_key_required")


async def test_correlation_id_is_accepted_and_echoed(client):
    response = await client.get("/health/live", headers={"X-Correlation-ID": "order-42.a:b"})
    assert response.headers["x-correlation-id"] == "order-42.a:b"


async def test_invalid_correlation_id_is_replaced(client):
    response = await client.get("/health/live", headers={"X-Correlation-ID": "bad id!"})
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["x-correlation-id"])


async def test_traceparent_supplies_the_correlation_id(client):
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.get("/health/live", headers={"traceparent": parent})
    assert response.headers["x-correlation-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_correlation_id_is_stored_on_events_and_their_exceptions(client):
    await client.post(
        "/process/usage/v1/events",
        headers={"X-Correlation-ID": "ingest-7"},
        json=[
            {
                "id": "e1",
                "source": "s",
                "event_type": "t",
                "customer_id": "c",
                "timestamp": utcnow().isoformat(),
            }
        ],
    )
    exceptions = (await client.get("/process/exceptions/v1/")).json()["data"]
    assert exceptions[0]["correlation_id"] == "ingest-7"
    assert await stored_events(client) == ["ingest-7"]


async def test_readiness_checks_the_database(client, tmp_path):
    response = await client.get("/health/ready")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    # A database that cannot be opened (its directory does not exist): not ready.
    unreachable = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'meterline.db'}"
    async with gateway_client(unreachable, authenticated=False) as broken:
        assert (await broken.get("/health/live")).status_code == 200
        assert_problem(await broken.get("/health/ready"), 503, "not_ready")
