"""Usage events as a client sends them to the ingest API, and sending them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import httpx

EVENTS = "/process/usage/v1/events"


def event(
    event_id: str,
    customer_id: str,
    event_type: str,
    at: str | datetime,
    *,
    source: str = "test",
    **properties,
) -> dict:
    """One event as the ingest API takes it; ``at`` is an ISO 8601 text or an aware
    datetime."""
    return {
        "id": event_id,
        "source": source,
        "event_type": event_type,
        "customer_id": customer_id,
        "timestamp": at if isinstance(at, str) else at.isoformat(),
        "properties": properties,
    }


def on(day: date, hour: int = 12) -> str:
    """``hour`` o'clock UTC on ``day``, as an event timestamp."""
    return datetime.combine(day, time(hour), tzinfo=UTC).isoformat()


async def send(client: httpx.AsyncClient, events: list[dict]) -> dict:
    """Sends ``events`` in one batch, every one of them accepted; returns the answer."""
    sent = await client.post(EVENTS, json=events)
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["accepted"] == len(events), body
    return body
