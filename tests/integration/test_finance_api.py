"""The finance Experience API: a period overview whose every figure is recomputed here from
what the test sent and the price plan, the ERP posting backlog (failed and pending, with
reasons and schedule), retries through the workbench with Idempotency-Key, and a trace
from a request's events to the ERP documents."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from canonical import errors
from canonical.model import Subscription
from canonical.time import Period, utcnow
from process_apis.posting.outbox import OutboxWorker, PostingPolicy
from process_apis.posting.service import PostingService
from tests.support.app import gateway_client
from tests.support.auth import bearer
from tests.support.problems import assert_problem
from tests.support.seeding import USAGE_PLAN, customer, seed

API = "/experience/finance/v1"
D = Decimal
VAT_DE = D("0.19")


def cents(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


# Events of last month are accepted (the default limit is 35 days old).
RECENT = {"event_max_age_days": 100, "worker_in_process": False}
# What the overview says of a period no one reconciled yet.
NOT_RECONCILED = {
    "status": "not_reconciled",
    "generated_at": None,
    "documents": 0,
    "reconciled_documents": 0,
    "pending_documents": 0,
    "failed_documents": 0,
    "variances": [],
}


def last_month() -> Period:
    """The period before this one: over, so its invoices are final at once."""
    now = Period.containing(utcnow())
    return Period(now.year - 1, 12) if now.month == 1 else Period(now.year, now.month - 1)


def moment(period: Period, day: int, hour: int = 12) -> str:
    return datetime(period.year, period.month, day, hour, tzinfo=UTC).isoformat()


def usage_plan_total(calls: int, vat: Decimal) -> Decimal:
    """An invoice of ``USAGE_PLAN``: 49 platform fee, 0.002 per call, tax per line."""
    lines = [D("49.00"), cents(D("0.002") * calls)]
    return sum(lines) + sum(cents(line * vat) for line in lines)


def call(n: int, customer_id: str, at: str, source: str = "fin") -> dict:
    return {
        "id": f"{customer_id}-{n}",
        "source": source,
        "event_type": "api.request",
        "customer_id": customer_id,
        "timestamp": at,
    }


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day_of(at: str) -> str:
    return datetime.fromisoformat(at).date().isoformat()


async def test_period_overview_figures_match_what_was_sent_and_billed(database_url):
    period = last_month()
    async with gateway_client(database_url, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        # A third customer whose plan does not exist yet: its billing is held.
        await c.crm.put_customer(customer("cus_held"))
        await c.crm.put_subscription(
            Subscription(
                id="sub_held", customer_id="cus_held", plan_id="plan_x", start_date=period.first_day
            )
        )
        at = [moment(period, day, hour) for day, hour in [(1, 0), (2, 9), (2, 23)] * 3]
        sent = [call(n, "cus_de", t) for n, t in enumerate(at[:5])]
        sent += [call(n, "cus_fr", t) for n, t in enumerate(at[5:8])]
        sent.append(call(0, "cus_unknown", at[8]))
        answer = await client.post("/process/usage/v1/events", json=sent)
        assert answer.json()["accepted"] == len(sent)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        # A late call of cus_de, after its invoice: a memo will bill it; until then the
        # reconciliation shows the difference.
        late = call(99, "cus_de", moment(period, 28))
        assert (await client.post("/process/usage/v1/events", json=[late])).status_code == 200
        reconciled = await client.get(f"/process/reconciliation/v1/periods/{period}")
        assert reconciled.status_code == 200, reconciled.text

        response = await client.get(f"{API}/periods/{period}/overview")
        assert response.status_code == 200, response.text
        body = response.json()

    total = usage_plan_total(5, VAT_DE) + usage_plan_total(3, D(0))
    per_day = Counter(day_of(e["timestamp"]) for e in [*sent, late])
    assert body["object"] == "finance_period_overview" and body["period"] == str(period)
    usage = body["usage"]
    assert (usage["events"], usage["unmatched"], usage["late"]) == (len(sent) + 1, 1, 1)
    assert usage["by_event_type"] == [{"event_type": "api.request", "events": len(sent) + 1}]
    assert len(usage["daily"]) == period.days
    assert {d["date"]: d["events"] for d in usage["daily"] if d["events"]} == dict(per_day)
    assert body["invoiced"] == [
        {
            "currency": "EUR",
            "invoices": 2,
            "invoiced_total": str(total),
            "credit_memos": 0,
            "credited_total": "0",
            "debit_memos": 0,
            "debited_total": "0",
            "net_total": str(total),
            "drafts": 0,
            "draft_total": "0",
        }
    ]
    assert body["posting"] == [
        {
            "currency": "EUR",
            "posted": 2,
            "posted_total": str(total),
            "pending": 0,
            "pending_total": "0",
            "failed": 0,
            "failed_total": "0",
        }
    ]
    today = utcnow().date().isoformat()
    assert body["posted_daily"] == [
        {"date": today, "currency": "EUR", "documents": 2, "total": str(total)}
    ]
    assert body["held"] == {"billing_held": 1, "uninvoiced_subscriptions": 1}
    # The reconciliation raised the variance the late call makes.
    assert body["exceptions"]["open"] == 3
    assert {k["kind"]: k["open"] for k in body["exceptions"]["by_kind"]} == {
        "billing_failed": 1,
        "unknown_customer": 1,
        "reconciliation_variance": 1,
    }
    reconciliation = body["reconciliation"]
    assert reconciliation["status"] == "variances"
    assert reconciliation["generated_at"] == reconciled.json()["generated_at"]
    assert (reconciliation["documents"], reconciliation["reconciled_documents"]) == (2, 2)
    [variance] = reconciliation["variances"]
    assert variance["kind"] == "quantity_mismatch"
    assert variance["subject"] == f"{period}:cus_de:calls"
    assert variance["context"]["difference"] == "1"


async def test_drafts_of_a_grace_window_are_counted_apart(database_url):
    period = Period.containing(utcnow())
    async with gateway_client(database_url, billing_grace_days=5, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period)
        body = (await client.get(f"{API}/periods/{period}/overview")).json()
    [eur] = body["invoiced"]
    assert (eur["invoices"], eur["net_total"], eur["drafts"]) == (0, "0", 2)
    assert D(eur["draft_total"]) == usage_plan_total(0, VAT_DE) + usage_plan_total(0, D(0))
    assert body["posting"] == []  # nothing reaches the ERP before finalization


async def test_usage_is_counted_per_event_type_and_day(database_url):
    period = last_month()
    async with gateway_client(database_url, **RECENT) as client:
        await seed(client.container, USAGE_PLAN)
        days = [moment(period, 1, 0), moment(period, 1, 23), moment(period, 3)]
        sent = [call(n, "cus_de", t) for n, t in enumerate(days)]
        sent += [
            {**call(n, "cus_fr", t, "fin-gpu"), "event_type": "gpu.seconds"}
            for n, t in enumerate(days[:2])
        ]
        sent.append(call(0, "cus_nobody", days[2]))
        assert (await client.post("/process/usage/v1/events", json=sent)).json()["accepted"] == 6
        usage = (await client.get(f"{API}/periods/{period}/overview")).json()["usage"]
    # The gpu events (no meter of the plan) and cus_nobody's are kept, unmatched.
    assert (usage["events"], usage["unmatched"], usage["late"]) == (6, 3, 0)
    # Most events first.
    assert usage["by_event_type"] == [
        {"event_type": "api.request", "events": 4},
        {"event_type": "gpu.seconds", "events": 2},
    ]
    assert {d["date"]: d["events"] for d in usage["daily"] if d["events"]} == {
        day_of(days[0]): 4,
        day_of(days[2]): 2,
    }


async def test_a_quiet_period_is_all_zeros_and_balanced_once_reconciled(database_url):
    async with gateway_client(database_url) as client:
        body = (await client.get(f"{API}/periods/2001-02/overview")).json()
        assert body["usage"]["events"] == 0 and len(body["usage"]["daily"]) == 28
        assert body["invoiced"] == body["posting"] == body["posted_daily"] == []
        assert body["reconciliation"] == NOT_RECONCILED
        await client.get("/process/reconciliation/v1/periods/2001-02")
        body = (await client.get(f"{API}/periods/2001-02/overview")).json()
        assert body["reconciliation"]["status"] == "balanced"
        assert body["reconciliation"]["generated_at"] is not None
        assert_problem(await client.get(f"{API}/periods/2001-13/overview"), 400)


async def variance_occurrences(client, subject: str) -> int:
    found = await client.get(f"{API}/exceptions", params={"kind": "reconciliation_variance"})
    return next(e["occurrences"] for e in found.json()["data"] if e["subject"] == subject)


async def test_looking_at_a_period_neither_reconciles_it_nor_calls_the_erp(database_url):
    """The overview shows the latest reconciliation, made when asked: reading it twice
    leaves a standing variance's occurrences as they were and spends no ERP call."""
    period = last_month()
    # A quota the test never reaches: the reference ERP behind the fault injector,
    # which counts every call.
    faults = "quota_per_second=1000"
    async with gateway_client(database_url, erp_faults=faults, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        sent = [call(n, "cus_de", moment(period, 2)) for n in range(3)]
        await client.post("/process/usage/v1/events", json=sent)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        late = call(99, "cus_de", moment(period, 28))
        assert (await client.post("/process/usage/v1/events", json=[late])).status_code == 200

        calls = c.erp.stats["calls"]
        before = (await client.get(f"{API}/periods/{period}/overview")).json()
        assert before["reconciliation"] == NOT_RECONCILED
        assert before["held"]["uninvoiced_subscriptions"] == 0
        assert "reconciliation_variance" not in {k["kind"] for k in before["exceptions"]["by_kind"]}
        assert c.erp.stats["calls"] == calls

        first = (await client.get(f"/process/reconciliation/v1/periods/{period}")).json()
        assert c.erp.stats["calls"] > calls
        subject = f"{period}:cus_de:calls"
        assert [v["subject"] for v in first["variances"]] == [subject]
        assert await variance_occurrences(client, subject) == 1

        calls = c.erp.stats["calls"]
        for _ in range(2):
            shown = (await client.get(f"{API}/periods/{period}/overview")).json()
            reconciliation = shown["reconciliation"]
            assert reconciliation["status"] == "variances"
            assert reconciliation["generated_at"] == first["generated_at"]
            assert reconciliation["variances"] == first["variances"]
            assert shown["exceptions"]["open"] == 1
        assert c.erp.stats["calls"] == calls
        assert await variance_occurrences(client, subject) == 1

        # Reconciling again through the finance API, when asked, counts the standing
        # variance once more and answers the overview with it; the overview then shows
        # that reconciliation. The same Idempotency-Key again reconciles nothing.
        url, keyed = f"{API}/periods/{period}/reconciliation", {"Idempotency-Key": "rec-1"}
        answered = await client.post(url, headers=keyed)
        assert answered.status_code == 200, answered.text
        again = answered.json()["reconciliation"]
        assert instant(again["generated_at"]) > instant(first["generated_at"])
        assert [v["subject"] for v in again["variances"]] == [subject]
        assert await variance_occurrences(client, subject) == 2
        shown = (await client.get(f"{API}/periods/{period}/overview")).json()
        assert shown["reconciliation"]["generated_at"] == again["generated_at"]
        replayed = await client.post(url, headers=keyed)
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert replayed.json()["reconciliation"] == again
        assert await variance_occurrences(client, subject) == 2
        assert_problem(await client.post(url), 400, "idempotency_key_required")


async def test_failed_postings_wait_in_the_backlog_until_retried(database_url):
    period = last_month()
    async with gateway_client(database_url, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.erp.set_period_status("le_de", str(period), "closed")
        before = utcnow()
        await c.billing_runs.run(period)
        await c.outbox.drain()

        backlog = (await client.get(f"{API}/postings/backlog")).json()
        assert [b["status"] for b in backlog["data"]] == ["failed", "failed"]
        assert backlog["has_more"] is False
        invoices = (await client.get("/process/billing/v1/invoices")).json()["data"]
        by_id = {i["id"]: i for i in invoices}
        failed = (await client.get(f"{API}/exceptions", params={"kind": "posting_failed"})).json()
        exception_of = {e["subject"]: e["id"] for e in failed["data"]}
        for item in backlog["data"]:
            invoice = by_id[item["invoice_id"]]
            assert (item["number"], item["total"]) == (invoice["number"], invoice["total"])
            assert item["customer_id"] == invoice["customer_id"] and item["period"] == str(period)
            assert item["reason"].startswith("period_closed")
            assert item["attempts"] == 1 and item["next_attempt_at"] is None
            assert item["in_flight"] is False
            assert item["exception_id"] == exception_of[item["invoice_id"]]
            since = datetime.fromisoformat(item["waiting_since"].replace("Z", "+00:00"))
            assert before - timedelta(seconds=1) <= since <= utcnow()
            assert 0 <= item["age_seconds"] <= (utcnow() - before).total_seconds() + 1
        first = (await client.get(f"{API}/postings/backlog", params={"limit": 1})).json()
        assert first["has_more"] is True
        rest = await client.get(
            f"{API}/postings/backlog", params={"starting_after": first["data"][0]["invoice_id"]}
        )
        assert [b["invoice_id"] for b in first["data"] + rest.json()["data"]] == [
            b["invoice_id"] for b in backlog["data"]
        ]
        assert (await client.get(f"{API}/postings/backlog?status=pending")).json()["data"] == []
        overview = (await client.get(f"{API}/periods/{period}/overview")).json()
        [posting] = overview["posting"]
        assert (posting["failed"], posting["posted"]) == (2, 0)
        assert D(posting["failed_total"]) == sum(D(i["total"]) for i in invoices)

        # Fixed in the ERP, then retried through the finance API: once per key.
        await c.erp.set_period_status("le_de", str(period), "open")
        exception_id = failed["data"][0]["id"]
        url = f"{API}/exceptions/{exception_id}/retry"
        assert_problem(await client.post(url), 400, "idempotency_key_required")
        retried = await client.post(url, headers={"Idempotency-Key": "fin-retry-1"})
        assert retried.status_code == 200, retried.text
        assert retried.json()["retryable"] is True  # open until the ERP takes it
        replay = await client.post(url, headers={"Idempotency-Key": "fin-retry-1"})
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == retried.json()
        await c.outbox.drain()
        backlog = (await client.get(f"{API}/postings/backlog")).json()["data"]
        assert [b["exception_id"] for b in backlog] == [failed["data"][1]["id"]]
        closed = (await client.get(f"{API}/exceptions/{exception_id}")).json()
        assert closed["status"] == "resolved" and closed["retryable"] is False


class Down:
    """The reference ERP, down for ``post_invoice``."""

    def __init__(self, erp) -> None:
        self._erp = erp

    def __getattr__(self, name):
        return getattr(self._erp, name)

    async def post_invoice(self, invoice):
        raise errors.SystemUnavailable("ERP down for maintenance", system="erp")


async def test_pending_postings_show_their_next_attempt_and_reason(database_url):
    period = last_month()
    async with gateway_client(database_url, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(period)
        waiting = (await client.get(f"{API}/postings/backlog?status=pending")).json()["data"]
        assert len(waiting) == 2
        assert all(b["attempts"] == 0 and b["reason"] is None for b in waiting)
        assert all(b["next_attempt_at"] is None and b["exception_id"] is None for b in waiting)

        worker = OutboxWorker(
            PostingService(c.sessions, Down(c.erp), c.crm),
            PostingPolicy(attempts=1, initial_backoff=30, max_backoff=60, quota_per_second=1000),
        )
        before = utcnow()
        result = await worker.drain()
        assert result.pending == 2
        waiting = (await client.get(f"{API}/postings/backlog")).json()["data"]
        for item in waiting:
            assert item["status"] == "pending" and item["attempts"] == 1
            assert "ERP down for maintenance" in item["reason"]
            next_at = datetime.fromisoformat(item["next_attempt_at"].replace("Z", "+00:00"))
            assert next_at > before


async def test_a_trace_follows_a_request_from_its_events_to_the_erp(database_url):
    period = last_month()
    async with gateway_client(database_url, **RECENT) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        at = [moment(period, day) for day in (3, 4, 5)]
        sent = [call(n, "cus_de", t) for n, t in enumerate(at[:2])]
        sent.append(call(0, "cus_nobody", at[2]))
        headers = {"X-Correlation-ID": "fin-trace-7"}
        await client.post("/process/usage/v1/events", json=sent, headers=headers)
        await c.billing_runs.run(period)
        await c.outbox.drain()

        trace = (await client.get(f"{API}/traces/fin-trace-7")).json()
        assert trace["correlation_id"] == "fin-trace-7" and trace["event_count"] == 3
        assert sorted(e["id"] for e in trace["events"]) == sorted(e["id"] for e in sent)
        [document] = trace["documents"]
        invoices = (
            await client.get("/process/billing/v1/invoices", params={"customer_id": "cus_de"})
        ).json()["data"]
        assert document["id"] == invoices[0]["id"] and document["relation"] == "bills_events"
        assert document["posting"]["status"] == "posted"
        assert document["erp_document"]["external_ref"] == document["id"]
        assert document["erp_document"]["total"] == document["total"] == invoices[0]["total"]
        assert [e["kind"] for e in trace["exceptions"]] == ["unknown_customer"]
        assert trace["truncated"] is False

        assert_problem(await client.get(f"{API}/traces/nobody-sent-this"), 404)
        assert_problem(await client.get(f"{API}/traces/bad%20id"), 400)


async def test_a_partner_client_cannot_hold_finance_scopes(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        try:
            await bearer(client, client.container, ["finance:read"], partner_id="prt_1")
        except errors.InvalidRequest as exc:
            assert "partner client may only hold" in exc.detail
        else:
            raise AssertionError("a partner client was given finance:read")
