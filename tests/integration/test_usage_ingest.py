"""``POST /process/usage/v1/events`` as a producer sees it, on SQLite and PostgreSQL:
the accepted formats (CloudEvents from the official SDK), per-event results, the
event-time policy, refused requests that store nothing, NUL screening, unmatched usage
and its exceptions, Idempotency-Key replay, late usage for invoiced periods, and exactly
once under concurrent, overlapping resends."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta

import sqlalchemy as sa
from cloudevents.conversion import to_json, to_structured
from cloudevents.http import CloudEvent

from canonical.model import Meter
from canonical.time import Period, utcnow
from process_apis.tables import usage_events
from tests.support.app import gateway_client
from tests.support.billing import settled_run
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, customer, seed

EVENTS = "/process/usage/v1/events"
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def event(event_id: str, *, at: datetime | None = None, **fields) -> dict:
    """A canonical event: an ``api.request`` of ``cus_de`` from ``api-gw`` (both known
    once ``seed`` ran), at ``at`` (receipt time when None)."""
    body = {
        "id": event_id,
        "source": "api-gw",
        "event_type": "api.request",
        "customer_id": "cus_de",
    } | fields
    if at is not None:
        body["timestamp"] = at.isoformat()
    return body


async def stored(client) -> dict[tuple[str, str], sa.Row]:
    """Every stored usage event by (source, id)."""
    async with client.container.sessions() as session:
        result = await session.execute(sa.select(usage_events))
    return {(row.source, row.event_id): row for row in result}


async def count(client) -> int:
    async with client.container.sessions() as session:
        return await session.scalar(sa.select(sa.func.count()).select_from(usage_events))


def accepted(index: int, event_id: str, reason: str | None = None) -> dict:
    return {"index": index, "id": event_id, "status": "accepted", "reason": reason}


def duplicate(index: int, event_id: str) -> dict:
    return {"index": index, "id": event_id, "status": "duplicate", "reason": None}


def rejected(index: int, event_id: str, reason: str) -> dict:
    return {"index": index, "id": event_id, "status": "rejected", "reason": reason}


def counts(body: dict) -> tuple[int, int, int, int, int]:
    return (
        body["accepted"],
        body["duplicates"],
        body["rejected"],
        body["unmatched"],
        body["adjustments"],
    )


# --- 1. CloudEvents from the official SDK -------------------------------------------------


async def test_cloudevents_sdk_structured_and_batch_mode_are_stored(database_url):
    now = utcnow()
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)

        # Structured mode, exactly as the SDK sends it (its own content-type header),
        # with extension attributes.
        one = CloudEvent(
            {
                "type": "api.request",
                "source": "sdk/structured",
                "id": "ce-1",
                "subject": "cus_de",
                "time": (now - timedelta(hours=1)).isoformat(),
                "tenant": "acme",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
            {"path": "/v1/things", "n": 3},
        )
        headers, body = to_structured(one)
        assert headers["content-type"] == "application/cloudevents+json"
        response = await client.post(EVENTS, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["results"] == [accepted(0, "ce-1")]
        assert counts(response.json()) == (1, 0, 0, 0, 0)

        # Batch mode: the SDK has no batch helper, so the batch is the JSON array of the
        # SDK's own per-event JSON.
        timed = CloudEvent(
            {
                "type": "api.request",
                "source": "sdk/batch",
                "id": "ce-2",
                "subject": "cus_fr",
                "time": (now - timedelta(days=2)).isoformat(),
                "datacontenttype": "application/json",
                "region": "eu-central-1",
            },
            {"n": 1},
        )
        untimed = CloudEvent(
            {"type": "api.request", "source": "sdk/batch", "id": "ce-3", "subject": "cus_de"}
        )
        del untimed["time"]  # the SDK fills in its own clock; a producer may omit it
        batch = [json.loads(to_json(e)) for e in (timed, untimed, one)]
        assert "time" not in batch[1] and "data" not in batch[1]
        before = utcnow()
        response = await client.post(EVENTS, content=json.dumps(batch), headers=BATCH)
        after = utcnow()
        assert response.status_code == 200, response.text
        assert response.json()["results"] == [
            accepted(0, "ce-2"),
            accepted(1, "ce-3"),
            duplicate(2, "ce-1"),  # already sent in structured mode
        ]
        assert counts(response.json()) == (2, 1, 0, 0, 0)

        rows = await stored(client)
        assert set(rows) == {
            ("sdk/structured", "ce-1"),
            ("sdk/batch", "ce-2"),
            ("sdk/batch", "ce-3"),
        }
        first = rows["sdk/structured", "ce-1"]
        assert (first.event_type, first.customer_id, first.matched) == ("api.request", "cus_de", 1)
        assert first.timestamp == now - timedelta(hours=1)
        assert first.properties == {"path": "/v1/things", "n": 3}
        second = rows["sdk/batch", "ce-2"]
        assert (second.customer_id, second.properties) == ("cus_fr", {"n": 1})
        assert second.timestamp == now - timedelta(days=2)
        # No time: the receipt time, and no data: no properties.
        third = rows["sdk/batch", "ce-3"]
        assert before <= third.timestamp <= after
        assert third.timestamp == third.received_at
        assert third.properties == {}


async def test_cloudevents_missing_a_required_attribute_is_a_400_storing_nothing(database_url):
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        valid = json.loads(
            to_json(
                CloudEvent(
                    {"type": "api.request", "source": "sdk", "id": "ok-1", "subject": "cus_de"}
                )
            )
        )
        # The SDK lets a producer omit ``subject`` (optional in CloudEvents); Meterline
        # needs it: it names the customer.
        headers, body = to_structured(
            CloudEvent({"type": "api.request", "source": "sdk", "id": "ns-1"})
        )
        assert b'"subject"' not in body
        response = await client.post(EVENTS, content=body, headers=headers)
        problem = assert_problem(response, 400, "invalid_events")
        assert "subject" in problem["detail"]

        no_version = json.loads(
            to_json(
                CloudEvent(
                    {"type": "api.request", "source": "sdk", "id": "nv-1", "subject": "cus_de"}
                )
            )
        )
        del no_version["specversion"]
        response = await client.post(EVENTS, content=json.dumps(no_version), headers=STRUCTURED)
        assert "specversion" in assert_problem(response, 400, "invalid_events")["detail"]

        # In a batch, one event without specversion refuses the whole batch.
        response = await client.post(EVENTS, content=json.dumps([valid, no_version]), headers=BATCH)
        problem = assert_problem(response, 400, "invalid_events")
        assert "specversion" in problem["detail"] and "$[1]" in problem["detail"]

        # Another specversion than 1.0 is not taken either.
        response = await client.post(
            EVENTS, content=json.dumps({**valid, "specversion": "0.3"}), headers=STRUCTURED
        )
        assert_problem(response, 400, "invalid_events")
        assert await count(client) == 0

        # The valid event alone goes in: the refusals above were about the bad events.
        response = await client.post(EVENTS, content=json.dumps([valid]), headers=BATCH)
        assert response.json()["accepted"] == 1
        assert await count(client) == 1


# --- 2. Per-event results ---------------------------------------------------------------


async def test_a_mixed_batch_reports_each_event_and_counts(database_url):
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        first = await client.post(EVENTS, json=[event("e-earlier", at=hour_ago)])
        assert first.json()["results"] == [accepted(0, "e-earlier")]

        batch = [
            event("e-1", at=hour_ago),
            event("e-1", at=hour_ago, customer_id="cus_fr"),  # same (source, id) again
            event("e-earlier", at=hour_ago),  # stored by the earlier request
            event("e-old", at=now - timedelta(days=40)),
            event("e-future", at=now + timedelta(hours=1)),
            event("e-1", at=hour_ago, source="other-src"),  # another source: another event
            event("e-2"),
            event("e-3", at=now - timedelta(days=40)),  # too old here ...
            event("e-3", at=hour_ago),  # ... so this copy is the first valid one
        ]
        response = await client.post(EVENTS, json=batch)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["results"] == [
            accepted(0, "e-1"),
            duplicate(1, "e-1"),
            duplicate(2, "e-earlier"),
            rejected(3, "e-old", "event_too_old"),
            rejected(4, "e-future", "event_in_future"),
            accepted(5, "e-1"),
            accepted(6, "e-2"),
            rejected(7, "e-3", "event_too_old"),
            accepted(8, "e-3"),
        ]
        assert counts(body) == (4, 2, 3, 0, 0)

        rows = await stored(client)
        assert set(rows) == {
            ("api-gw", "e-earlier"),
            ("api-gw", "e-1"),
            ("other-src", "e-1"),
            ("api-gw", "e-2"),
            ("api-gw", "e-3"),
        }
        # The first copy of e-1 is the one kept; the in-batch duplicate changed nothing.
        assert rows["api-gw", "e-1"].customer_id == "cus_de"
        assert rows["api-gw", "e-3"].timestamp == hour_ago

        # The same batch again: everything valid is now a duplicate.
        again = (await client.post(EVENTS, json=batch)).json()
        assert [r["status"] for r in again["results"]] == [
            "duplicate",
            "duplicate",
            "duplicate",
            "rejected",
            "rejected",
            "duplicate",
            "duplicate",
            "rejected",
            "duplicate",
        ]
        assert counts(again) == (0, 6, 3, 0, 0)
        assert await count(client) == 5


# --- 3. Event-time policy ---------------------------------------------------------------


async def test_the_default_event_time_window_is_35_days_back_and_5_minutes_ahead(database_url):
    now = utcnow()
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        batch = [
            event("old-in", at=now - timedelta(days=35) + timedelta(minutes=2)),
            event("old-out", at=now - timedelta(days=35) - timedelta(minutes=2)),
            event("ahead-in", at=now + timedelta(minutes=4)),
            event("ahead-out", at=now + timedelta(minutes=6)),
        ]
        body = (await client.post(EVENTS, json=batch)).json()
        assert body["results"] == [
            accepted(0, "old-in"),
            rejected(1, "old-out", "event_too_old"),
            accepted(2, "ahead-in"),
            rejected(3, "ahead-out", "event_in_future"),
        ]
        assert {key[1] for key in await stored(client)} == {"old-in", "ahead-in"}


async def test_the_event_time_window_follows_the_settings(database_url):
    now = utcnow()
    async with gateway_client(
        database_url, event_max_age_days=2, event_max_future_seconds=3600
    ) as client:
        await seed(client.container, USAGE_PLAN)
        batch = [
            event("day-old", at=now - timedelta(days=1)),
            event("ten-days-old", at=now - timedelta(days=10)),  # fine by the default
            event("half-hour-ahead", at=now + timedelta(minutes=30)),  # too far by default
            event("two-hours-ahead", at=now + timedelta(hours=2)),
        ]
        body = (await client.post(EVENTS, json=batch)).json()
        assert body["results"] == [
            accepted(0, "day-old"),
            rejected(1, "ten-days-old", "event_too_old"),
            accepted(2, "half-hour-ahead"),
            rejected(3, "two-hours-ahead", "event_in_future"),
        ]
        assert {key[1] for key in await stored(client)} == {"day-old", "half-hour-ahead"}


# --- 4. Refused requests ----------------------------------------------------------------


async def test_refused_requests_store_nothing_and_keep_what_was_stored(database_url):
    async with gateway_client(database_url, max_batch_events=5, max_body_bytes=4_000) as client:
        await seed(client.container, USAGE_PLAN)
        ok = await client.post(EVENTS, json=[event("kept-1"), event("kept-2")])
        assert ok.json()["accepted"] == 2

        def post(content: bytes, content_type: str | None = "application/json"):
            headers = {"content-type": content_type} if content_type else {}
            return client.post(EVENTS, content=content, headers=headers)

        new = event("new-1")
        assert_problem(await post(b'[{"id": "new-1", "source": '), 400, "malformed_body")
        assert_problem(await post(b"not json at all"), 400, "malformed_body")

        problem = assert_problem(
            await post(json.dumps([new, {"id": "x", "source": "s"}]).encode()),
            400,
            "invalid_events",
        )
        assert "$[1]" in problem["detail"]
        assert_problem(
            await post(json.dumps([new, event("new-2", event_type="")]).encode()),
            400,
            "invalid_events",
        )
        assert_problem(
            await post(json.dumps([new, event("new-2", timestamp="yesterday")]).encode()),
            400,
            "invalid_events",
        )
        assert_problem(
            await post(json.dumps([new, event("new-2", extra=1)]).encode()),  # unknown field
            400,
            "invalid_events",
        )
        assert_problem(await post(json.dumps(new).encode()), 400, "invalid_events")  # no array

        # properties (data in CloudEvents) must be a JSON object.
        for properties in ([1, 2], "text", 7, None):
            problem = assert_problem(
                await post(json.dumps([new, event("new-2", properties=properties)]).encode()),
                400,
                "invalid_events",
            )
            assert "index 1" in problem["detail"] and "object" in problem["detail"]
        cloud = {
            "specversion": "1.0",
            "id": "ce-x",
            "source": "s",
            "type": "api.request",
            "subject": "cus_de",
            "data": ["not", "an", "object"],
        }
        assert_problem(
            await post(json.dumps(cloud).encode(), "application/cloudevents+json"),
            400,
            "invalid_events",
        )

        for content_type in ("text/plain", "application/xml", "application/x-ndjson", None):
            assert_problem(
                await post(json.dumps([new]).encode(), content_type), 415, "unsupported_media_type"
            )

        six = [event(f"n-{i}") for i in range(6)]
        problem = assert_problem(await post(json.dumps(six).encode()), 413, "payload_too_large")
        assert "limit is 5" in problem["detail"]
        problem = assert_problem(
            await post(
                json.dumps([cloud | {"id": f"c-{i}", "data": {}} for i in range(6)]).encode(),
                "application/cloudevents-batch+json",
            ),
            413,
            "payload_too_large",
        )
        assert "limit is 5" in problem["detail"]

        # Few events, too many bytes.
        big = [event(f"b-{i}", properties={"pad": "x" * 1_500}) for i in range(3)]
        assert len(json.dumps(big)) > 4_000
        assert_problem(await post(json.dumps(big).encode()), 413, "payload_too_large")

        assert set(await stored(client)) == {("api-gw", "kept-1"), ("api-gw", "kept-2")}
        exceptions = (await client.get("/process/exceptions/v1/")).json()["data"]
        assert exceptions == []

        # At the limits, with a media type parameter, the same kind of batch goes in.
        five = [event(f"n-{i}") for i in range(5)]
        response = await post(json.dumps(five).encode(), "Application/JSON; charset=utf-8")
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 5
        assert await count(client) == 7


# --- 5. NUL in identifying text ---------------------------------------------------------


async def test_nul_in_identifying_text_rejects_only_that_event(database_url):
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        batch = [
            event("good-1"),
            event("bad\u0000id"),
            event("bad-source", source="api\u0000gw"),
            event("bad-customer", customer_id="cus_de\u0000"),
            event("bad-type", event_type="api.request\u0000"),
            event("good-2"),
        ]
        body = json.dumps(batch).encode()
        assert b"\\u0000" in body  # escaped on the wire, as JSON must
        response = await client.post(
            EVENTS, content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["results"] == [
            accepted(0, "good-1"),
            rejected(1, "bad\u0000id", "invalid_text"),
            rejected(2, "bad-source", "invalid_text"),
            rejected(3, "bad-customer", "invalid_text"),
            rejected(4, "bad-type", "invalid_text"),
            accepted(5, "good-2"),
        ]
        assert counts(result) == (2, 0, 4, 0, 0)
        assert set(await stored(client)) == {("api-gw", "good-1"), ("api-gw", "good-2")}
        # Nothing about the refused events was raised as unmatched usage either.
        assert (await client.get("/process/exceptions/v1/")).json()["data"] == []

        # The same in CloudEvents batch mode.
        cloud = [
            {
                "specversion": "1.0",
                "id": f"ce-{n}",
                "source": "ce",
                "type": "api.request",
                "subject": subject,
            }
            for n, subject in enumerate(["cus_de", "cus\u0000de"])
        ]
        response = await client.post(EVENTS, content=json.dumps(cloud), headers=BATCH)
        assert response.json()["results"] == [
            accepted(0, "ce-0"),
            rejected(1, "ce-1", "invalid_text"),
        ]
        assert await count(client) == 3


# --- 6. Unmatched usage -----------------------------------------------------------------


async def exceptions_of(client, kind: str) -> list[dict]:
    response = await client.get("/process/exceptions/v1/", params={"kind": kind})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_unknown_customer_and_event_type_are_stored_raised_and_rematched(database_url):
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        batch = [
            event("g-1", customer_id="cus_ghost"),
            event("g-2", customer_id="cus_ghost"),
            event("g-3", customer_id="cus_ghost"),
            event("m-1", event_type="mystery.event"),
            event("m-2", event_type="mystery.event"),
            event("k-1"),
        ]
        response = await client.post(
            EVENTS, json=batch, headers={"X-Correlation-ID": "corr-unmatched"}
        )
        body = response.json()
        assert counts(body) == (6, 0, 0, 5, 0)
        assert [r["status"] for r in body["results"]] == ["accepted"] * 6

        rows = await stored(client)
        assert {key[1]: row.matched for key, row in rows.items()} == {
            "g-1": 0,
            "g-2": 0,
            "g-3": 0,
            "m-1": 0,
            "m-2": 0,
            "k-1": 1,
        }

        [ghost] = await exceptions_of(client, "unknown_customer")
        assert ghost["status"] == "open"
        assert ghost["context"]["subject"] == "cus_ghost"
        assert ghost["context"]["customer_id"] == "cus_ghost"
        assert ghost["context"]["occurrences"] == 3
        assert ghost["correlation_id"] == "corr-unmatched"
        [mystery] = await exceptions_of(client, "unknown_event_type")
        assert mystery["context"]["subject"] == "mystery.event"
        assert mystery["context"]["occurrences"] == 2

        # A resend counts nothing; a new event of the same customer counts once more.
        await client.post(EVENTS, json=batch)
        assert (await exceptions_of(client, "unknown_customer"))[0]["context"]["occurrences"] == 3
        more = await client.post(EVENTS, json=[event("g-4", customer_id="cus_ghost")])
        assert more.json()["unmatched"] == 1
        [again] = await exceptions_of(client, "unknown_customer")  # still one record
        assert (again["id"], again["context"]["occurrences"]) == (ghost["id"], 4)

        # Nothing to close while the mappings are still missing.
        usage = client.container.usage
        assert await usage.rematch() == 0
        assert (await exceptions_of(client, "unknown_customer"))[0]["status"] == "open"

        await client.container.crm.put_customer(customer("cus_ghost", name="Ghost GmbH"))
        assert await usage.rematch() == 1
        assert (await exceptions_of(client, "unknown_customer"))[0]["status"] == "resolved"
        assert (await exceptions_of(client, "unknown_event_type"))[0]["status"] == "open"

        await client.container.billing.put_meter(
            Meter(
                id="mtr_mystery",
                code="mystery",
                name="Mystery",
                event_type="mystery.event",
                aggregation="count",
            )
        )
        assert await usage.rematch() == 1
        assert (await exceptions_of(client, "unknown_event_type"))[0]["status"] == "resolved"
        open_ = await client.get("/process/exceptions/v1/", params={"status": "open"})
        assert open_.json()["data"] == []

        # Once the mappings exist, new usage for them is matched at once.
        body = (
            await client.post(
                EVENTS,
                json=[
                    event("g-5", customer_id="cus_ghost"),
                    event("m-3", event_type="mystery.event"),
                ],
            )
        ).json()
        assert counts(body) == (2, 0, 0, 0, 0)
        rows = await stored(client)
        assert rows["api-gw", "g-5"].matched == 1 and rows["api-gw", "m-3"].matched == 1


# --- 7. Idempotency-Key -----------------------------------------------------------------


async def test_idempotency_key_replays_the_first_answer(database_url):
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        batch = [event("i-1"), event("i-2"), event("i-1")]
        key = {"Idempotency-Key": "ingest-key-1"}
        first = await client.post(EVENTS, json=batch, headers=key)
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        assert counts(first.json()) == (2, 1, 0, 0, 0)

        replay = await client.post(EVENTS, json=batch, headers=key)
        assert replay.status_code == 200, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["content-type"].startswith("application/json")
        # The first answer, not a fresh "all duplicates" one.
        assert replay.json() == first.json()
        assert await count(client) == 2

        # Without the key the same batch is judged again: all duplicates now.
        fresh = (await client.post(EVENTS, json=batch)).json()
        assert counts(fresh) == (0, 3, 0, 0, 0)

        other = await client.post(EVENTS, json=[event("i-3")], headers=key)
        problem = assert_problem(other, 422, "idempotency_key_reused")
        assert "ingest-key-1" in problem["detail"]
        assert set(await stored(client)) == {("api-gw", "i-1"), ("api-gw", "i-2")}

        # Another key is another request.
        response = await client.post(EVENTS, json=[event("i-3")], headers={"Idempotency-Key": "k2"})
        assert response.json()["accepted"] == 1
        assert "idempotent-replayed" not in response.headers


# --- 8. Usage for an invoiced period ----------------------------------------------------


async def test_late_usage_for_an_invoiced_period_is_flagged_for_adjustment(database_url):
    current = Period.containing(utcnow())
    late_moment = current.start - timedelta(hours=1)  # the last hour of last month
    previous = Period.containing(late_moment)
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        before = await client.post(EVENTS, json=[event("p-1", at=late_moment - timedelta(hours=1))])
        assert before.json()["results"] == [accepted(0, "p-1")]

        run = await settled_run(
            client,
            await client.post(
                "/process/billing/v1/runs",
                json={"period": str(previous)},
                headers={"Idempotency-Key": "run-previous"},
            ),
        )
        assert run["counts"]["invoiced"] == 2

        batch = [
            event("p-late", at=late_moment),  # last month: invoiced
            event("c-1"),  # this month: not invoiced yet
            event("p-late-fr", at=late_moment, customer_id="cus_fr"),  # invoiced too
        ]
        response = await client.post(EVENTS, json=batch)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["results"] == [
            accepted(0, "p-late", "period_invoiced"),
            accepted(1, "c-1"),
            accepted(2, "p-late-fr", "period_invoiced"),
        ]
        assert counts(body) == (3, 0, 0, 0, 2)

        rows = await stored(client)
        assert {key[1]: row.adjustment for key, row in rows.items()} == {
            "p-1": 0,
            "p-late": 1,
            "c-1": 0,
            "p-late-fr": 1,
        }

        # One late event, one current one: adjustments == 1; a resend flags nothing.
        body = (
            await client.post(
                EVENTS, json=[event("p-late-2", at=late_moment), event("c-2"), event("p-late")]
            )
        ).json()
        assert body["results"] == [
            accepted(0, "p-late-2", "period_invoiced"),
            accepted(1, "c-2"),
            duplicate(2, "p-late"),
        ]
        assert counts(body) == (2, 1, 0, 0, 1)
        rows = await stored(client)
        assert rows["api-gw", "p-late-2"].adjustment == 1 and rows["api-gw", "c-2"].adjustment == 0


# --- 9. Exactly once under concurrency --------------------------------------------------


ROUNDS = 5


async def send(client, batch: list[dict], *, delay: float):
    await asyncio.sleep(delay)
    return await client.post(EVENTS, json=batch)


async def test_concurrent_overlapping_batches_store_each_event_exactly_once(database_url):
    rng = random.Random(20240607)
    async with gateway_client(database_url) as client:
        await seed(client.container, USAGE_PLAN)
        for round_ in range(ROUNDS):
            now = utcnow()
            universe = [
                event(f"cc{round_}-{i}", at=now - timedelta(minutes=i), source=f"src-{i % 3}")
                for i in range(60)
            ]
            requests = []
            for _ in range(8):
                batch = rng.sample(universe, 40)  # heavy overlap, each in its own order
                batch += rng.sample(batch, 5)  # and a few resends within the request
                requests.append(batch)
            covered = {(e["source"], e["id"]) for batch in requests for e in batch}
            assert len(covered) == len(universe)

            # All in flight together, arriving a moment apart (more so each round): they
            # meet in several transactions rather than all in one group commit.
            gap = 0.001 * (round_ + 1)
            responses = await asyncio.gather(
                *(send(client, batch, delay=gap * n) for n, batch in enumerate(requests))
            )

            assert [r.status_code for r in responses] == [200] * len(requests), [
                r.text for r in responses if r.status_code != 200
            ]
            answers = [r.json() for r in responses]
            assert sum(a["accepted"] for a in answers) == len(universe)
            winners: dict[tuple[str, str], int] = {}
            for batch, answer in zip(requests, answers, strict=True):
                assert answer["accepted"] + answer["duplicates"] == len(batch)
                assert answer["rejected"] == 0
                for result in answer["results"]:
                    sent = batch[result["index"]]
                    assert sent["id"] == result["id"]
                    if result["status"] == "accepted":
                        key = (sent["source"], sent["id"])
                        winners[key] = winners.get(key, 0) + 1
            assert winners == dict.fromkeys(covered, 1)

            keys = {key for key in await stored(client) if key[1].startswith(f"cc{round_}-")}
            assert keys == covered
        assert await count(client) == ROUNDS * 60
