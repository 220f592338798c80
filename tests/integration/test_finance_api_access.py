"""The finance API's exceptions workbench and who may use it: ``finance:read`` reads,
``finance:write`` acts (with an Idempotency-Key), any other token is refused with 403
``insufficient_scope``, no token with 401 — and the finance page's session cookie opens
none of it: the API takes Bearer tokens only."""

from __future__ import annotations

from canonical.access import SCOPES
from tests.support.app import gateway_client
from tests.support.auth import bearer, issue_token
from tests.support.finance_page import SESSION, sign_in
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, seed

API = "/experience/finance/v1"
PERIOD = "2026-01"


def unmatched(*pairs: tuple[str, str, str]) -> list[dict]:
    """Events ``(id, customer, event type)`` that match no customer or meter."""
    return [{"id": i, "source": "acc", "event_type": t, "customer_id": c} for i, c, t in pairs]


async def test_exceptions_are_listed_filtered_paged_and_resolved_with_a_note(database_url):
    async with gateway_client(database_url, authenticated=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        operator = await bearer(client, c, ["usage:write"])
        sent = unmatched(
            ("u1", "cus_x1", "api.request"),
            ("u2", "cus_x2", "api.request"),
            ("u3", "cus_x2", "api.request"),
            ("t1", "cus_de", "gpu.seconds"),
        )
        await client.post("/process/usage/v1/events", json=sent, headers=operator)
        desk = await c.clients.create("desk", ["finance:read", "finance:write"])
        desk_token = await issue_token(client, desk.client_id, desk.client_secret)
        token = {"Authorization": f"Bearer {desk_token}"}

        everything = (await client.get(f"{API}/exceptions", headers=token)).json()
        assert everything["object"] == "list" and everything["has_more"] is False
        kinds = sorted((e["kind"], e["subject"], e["occurrences"]) for e in everything["data"])
        assert kinds == [
            ("unknown_customer", "cus_x1", 1),
            ("unknown_customer", "cus_x2", 2),
            ("unknown_event_type", "gpu.seconds", 1),
        ]
        assert all(e["retryable"] and e["status"] == "open" for e in everything["data"])
        assert all("subject" not in e["context"] for e in everything["data"])

        customers = await client.get(
            f"{API}/exceptions", params={"kind": "unknown_customer"}, headers=token
        )
        assert {e["subject"] for e in customers.json()["data"]} == {"cus_x1", "cus_x2"}
        page1 = (await client.get(f"{API}/exceptions?limit=2", headers=token)).json()
        page2 = await client.get(
            f"{API}/exceptions",
            params={"limit": 2, "starting_after": page1["data"][-1]["id"]},
            headers=token,
        )
        assert page1["has_more"] and not page2.json()["has_more"]
        ids = [e["id"] for e in page1["data"] + page2.json()["data"]]
        assert ids == [e["id"] for e in everything["data"]]

        target = next(e for e in everything["data"] if e["kind"] == "unknown_event_type")
        url = f"{API}/exceptions/{target['id']}/resolve"
        note = {"note": "gpu.seconds is billed elsewhere"}
        assert_problem(await client.post(url, json=note, headers=token), 400)  # no key
        keyed = {**token, "Idempotency-Key": "res-a"}
        assert_problem(await client.post(url, json={"note": ""}, headers=keyed), 400)
        resolved = await client.post(url, json=note, headers=keyed)
        assert resolved.status_code == 200, resolved.text
        body = resolved.json()
        assert body["status"] == "resolved" and body["resolution"] == note["note"]
        assert body["retryable"] is False
        assert body["resolved_by"] == desk.client_id  # the caller
        again = {**token, "Idempotency-Key": "res-b"}
        assert_problem(await client.post(url, json=note, headers=again), 409, "invalid_transition")
        assert_problem(
            await client.post(f"{API}/exceptions/exc_missing/resolve", json=note, headers=again),
            404,
        )
        open_now = await client.get(f"{API}/exceptions", params={"status": "open"}, headers=token)
        assert target["id"] not in {e["id"] for e in open_now.json()["data"]}
        done = await client.get(f"{API}/exceptions", params={"status": "resolved"}, headers=token)
        assert [e["id"] for e in done.json()["data"]] == [target["id"]]
        assert_problem(await client.get(f"{API}/exceptions?status=closed", headers=token), 400)

        # A resolved exception has nothing left to retry.
        assert_problem(
            await client.post(
                f"{API}/exceptions/{target['id']}/retry",
                headers={**token, "Idempotency-Key": "rt-1"},
            ),
            409,
            "invalid_transition",
        )


async def test_each_route_demands_its_finance_scope(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await client.post(
            "/process/usage/v1/events",
            json=unmatched(("s1", "cus_y", "api.request")),
            headers=await bearer(client, c, ["usage:write"]),
        )
        reader = await bearer(client, c, ["finance:read"])
        [exception] = (await client.get(f"{API}/exceptions", headers=reader)).json()["data"]
        reads = [
            f"{API}/periods/{PERIOD}/overview",
            f"{API}/exceptions",
            f"{API}/exceptions/{exception['id']}",
            f"{API}/postings/backlog",
            f"{API}/traces/{exception['correlation_id']}",
        ]
        acts = [
            (f"{API}/exceptions/{exception['id']}/retry", None),
            (f"{API}/exceptions/{exception['id']}/resolve", {"note": "done"}),
            (f"{API}/periods/{PERIOD}/reconciliation", None),
        ]
        writer = await bearer(client, c, ["finance:write"])
        others = await bearer(client, c, sorted(set(SCOPES) - {"finance:read", "finance:write"}))

        for url in reads:
            assert (await client.get(url, headers=reader)).status_code == 200, url
            assert_problem(await client.get(url), 401, "invalid_token")
            for token in (writer, others):
                body = assert_problem(await client.get(url, headers=token), 403)
                assert body["code"] == "insufficient_scope", url
        for n, (url, data) in enumerate(acts):
            keyed = {"Idempotency-Key": f"k{n}"}
            refused = await client.post(url, json=data, headers={**reader, **keyed})
            assert_problem(refused, 403, "insufficient_scope")
            assert 'scope="finance:write"' in refused.headers["www-authenticate"]
            assert_problem(await client.post(url, json=data, headers=keyed), 401)
        retried = await client.post(acts[0][0], headers={**writer, "Idempotency-Key": "w1"})
        assert retried.status_code == 200, retried.text
        resolved = await client.post(
            acts[1][0], json=acts[1][1], headers={**writer, "Idempotency-Key": "w2"}
        )
        assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"


async def test_the_pages_session_cookie_opens_no_api(sqlite_url):
    """Signed in to the finance page, a browser holds a finance token in a cookie; the
    API still answers 401 to a request carrying only that cookie."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        desk = await client.container.clients.create("desk", ["finance:read", "finance:write"])
        signed_in = await sign_in(client, desk.client_id, desk.client_secret)
        assert signed_in.status_code == 303
        token = signed_in.cookies[SESSION]
        assert (await client.get("/finance")).status_code == 200
        for url in (f"{API}/exceptions", f"{API}/periods/{PERIOD}/overview"):
            answer = await client.get(url, cookies={SESSION: token})
            assert_problem(answer, 401, "invalid_token")
        # The same token as a Bearer token is a finance token, and nothing more.
        bearer_headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get(f"{API}/exceptions", headers=bearer_headers)).status_code == 200
        answer = await client.get("/process/billing/v1/runs", headers=bearer_headers)
        assert_problem(answer, 403, "insufficient_scope")
