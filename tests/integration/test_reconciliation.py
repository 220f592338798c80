"""Reconciliation of a billed period (``/process/reconciliation/v1``): events against
invoiced quantities per customer and meter, Meterline documents against the ERP's, the
ERP's journals and ledger; every variance raised as an exception and closed once gone.

The period is last month, so that every event time is fixed and an amendment can fall
inside it (the event-age limit is raised to accept it); runs and postings are driven
explicitly, with no background worker."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from canonical.model import (
    Amendment,
    ErpDocument,
    FlatCharge,
    Invoice,
    JournalEntry,
    JournalLine,
    PerUnitCharge,
    PricePlan,
)
from canonical.time import Period, utcnow
from process_apis.reconciliation import ReconciliationService
from tests.support.app import gateway_client
from tests.support.ingest import event, send
from tests.support.seeding import seed

D = Decimal
CENT = D("0.01")
VAT = D("0.19")
RECONCILE = "/process/reconciliation/v1/periods"
EXCEPTIONS = "/process/exceptions/v1/"
KIND = "reconciliation_variance"

PRICES = {"calls": D("0.002"), "tokens": D("0.001"), "storage": D("0.25"), "users": D("1.50")}


def _plan(plan_id: str, storage_price: Decimal) -> PricePlan:
    """A platform fee and a per-unit price on each of the four meters (count, sum, max,
    unique_count)."""
    prices = {**PRICES, "storage": storage_price}
    return PricePlan(
        id=plan_id,
        code=plan_id.removeprefix("plan_"),
        name=plan_id,
        currency="EUR",
        charges=[
            FlatCharge(code="platform", description="Platform", item_code="platform", amount=D(49)),
            *(
                PerUnitCharge(
                    code=code,
                    description=code.title(),
                    item_code=code,
                    meter_code=code,
                    unit_price=price,
                )
                for code, price in prices.items()
            ),
        ],
    )


PLAN = _plan("plan_rec", PRICES["storage"])
PLAN_B = _plan("plan_rec_b", D("0.20"))


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def last_month() -> Period:
    return Period.containing(Period.containing(utcnow()).start - timedelta(days=1))


async def usage(client, period: Period) -> None:
    """cus_de: 7 calls, 3,200 tokens, storage peaking at 120.5 GB, 6 distinct users;
    cus_fr: one call."""
    at = period.start + timedelta(hours=1)
    hour = timedelta(hours=1)
    events = [event(f"call-{i}", "cus_de", "api.request", at + i * hour) for i in range(7)]
    events += [
        event(f"tok-{i}", "cus_de", "llm.tokens", at + (10 + i) * hour, tokens=n)
        for i, n in enumerate([800, 900, 1500])
    ]
    events += [
        event("st-1", "cus_de", "storage.snapshot", at + timedelta(days=3), gb=120.5),
        event("st-2", "cus_de", "storage.snapshot", at + timedelta(days=5), gb=80),
    ]
    events += [
        event(f"u-{i}", "cus_de", "user.active", at + (20 + i) * hour, user_id=u)
        for i, u in enumerate(["u1", "u2", "u3", "u1", "u4", "u5", "u6"])
    ]
    events.append(event("fr-1", "cus_fr", "api.request", at))
    await send(client, events)


async def bill(container, period: Period, *, post: bool = True) -> dict[str, Invoice]:
    run = await container.billing_runs.run(period)
    assert run.status == "completed" and run.counts.invoiced == 2, run
    if post:
        await container.outbox.drain()
    found, _ = await container.invoices.list(run_id=run.id, limit=10)
    return {i.customer_id: await container.invoices.get(i.id) for i in found}


def quantities(report: dict) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    return {
        (r["customer_id"], r["meter_code"]): (
            D(r["event_quantity"]),
            D(r["invoiced_quantity"]),
            D(r["difference"]),
        )
        for r in report["quantities"]
    }


async def open_variances(client) -> dict[str, dict]:
    listed = (await client.get(EXCEPTIONS, params={"kind": KIND, "status": "open"})).json()
    return {e["context"]["subject"]: e for e in listed["data"]}


def client_for(database_url):
    return gateway_client(database_url, worker_in_process=False, event_max_age_days=400)


async def test_a_billed_and_posted_period_reconciles_with_exact_figures(database_url):
    period = last_month()
    async with client_for(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await usage(client, period)
        invoices = await bill(c, period)

        response = await client.get(f"{RECONCILE}/{period}")
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["object"], report["period"], report["status"]) == (
            "reconciliation",
            str(period),
            "balanced",
        )
        assert report["variances"] == [] and report["uninvoiced"] == []
        zero = (D(0), D(0), D(0))
        assert quantities(report) == {
            ("cus_de", "calls"): (D(7), D(7), D(0)),
            ("cus_de", "storage"): (D("120.5"), D("120.5"), D(0)),
            ("cus_de", "tokens"): (D(3200), D(3200), D(0)),
            ("cus_de", "users"): (D(6), D(6), D(0)),
            ("cus_fr", "calls"): (D(1), D(1), D(0)),
            ("cus_fr", "storage"): zero,
            ("cus_fr", "tokens"): zero,
            ("cus_fr", "users"): zero,
        }
        by_meter = {(r["customer_id"], r["meter_code"]): r for r in report["quantities"]}
        assert by_meter["cus_de", "users"]["aggregation"] == "unique_count"
        assert by_meter["cus_de", "users"]["event_count"] == 7
        assert by_meter["cus_de", "storage"]["event_count"] == 2

        # The totals, from the plan by hand: DE taxed at 19 % per line, FR reverse charge.
        de_lines = [
            D(49),
            cents(7 * PRICES["calls"]),
            cents(3200 * PRICES["tokens"]),
            cents(D("120.5") * PRICES["storage"]),
            cents(6 * PRICES["users"]),
        ]
        de_total = sum(de_lines) + sum(cents(x * VAT) for x in de_lines)
        assert de_total == D("108.69")
        documents = {d["customer_id"]: d for d in report["documents"]}
        for customer_id, total in (("cus_de", de_total), ("cus_fr", D("49.00"))):
            document = documents[customer_id]
            assert document["invoice_id"] == invoices[customer_id].id
            assert document["status"] == "reconciled"
            assert D(document["total"]) == D(document["erp_total"]) == total
            assert D(document["difference"]) == 0 and document["journal_balanced"] is True
            assert document["erp_document_id"] == invoices[customer_id].erp_document_id
        [ledger] = report["ledgers"]
        assert (ledger["legal_entity_id"], ledger["currency"]) == ("le_de", "EUR")
        assert D(ledger["imbalance"]) == 0 and ledger["balanced"] is True
        assert report["summary"] == {
            "quantities": 8,
            "documents": 2,
            "reconciled_documents": 2,
            "pending_documents": 0,
            "failed_documents": 0,
            "uninvoiced_subscriptions": 0,
            "variances": 0,
        }
        assert await open_variances(client) == {}


async def test_a_late_event_is_a_variance_until_a_memo_bills_it(database_url):
    period = last_month()
    async with client_for(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await usage(client, period)
        await bill(c, period)

        # Late usage, timed inside the invoiced period: one more call, a new storage peak.
        late_at = period.start + timedelta(days=20)
        late = await send(
            client,
            [
                event("late-call", "cus_de", "api.request", late_at),
                event("late-st", "cus_de", "storage.snapshot", late_at, gb=200),
            ],
        )
        assert late["adjustments"] == 2

        report = (await client.get(f"{RECONCILE}/{period}")).json()
        assert report["status"] == "variances"
        figures = quantities(report)
        assert figures["cus_de", "calls"] == (D(8), D(7), D(1))
        assert figures["cus_de", "storage"] == (D(200), D("120.5"), D("79.5"))
        assert figures["cus_de", "tokens"] == (D(3200), D(3200), D(0))
        calls, storage = f"{period}:cus_de:calls", f"{period}:cus_de:storage"
        assert [(v["kind"], v["subject"]) for v in report["variances"]] == [
            ("quantity_mismatch", calls),
            ("quantity_mismatch", storage),
        ]
        # The documents themselves still tie out with the ERP.
        assert {d["status"] for d in report["documents"]} == {"reconciled"}

        raised = await open_variances(client)
        assert set(raised) == {calls, storage}
        context = raised[storage]["context"]
        assert (context["event_quantity"], context["invoiced_quantity"]) == ("200", "120.5")
        assert (context["difference"], context["variance"]) == ("79.5", "quantity_mismatch")
        assert context["aggregation"] == "max" and context["customer_id"] == "cus_de"

        # Reconciling again counts one more occurrence; nothing is raised twice.
        await client.get(f"{RECONCILE}/{period}")
        again = await open_variances(client)
        assert set(again) == {calls, storage}
        assert again[calls]["context"]["occurrences"] == 2

        # Running the period again bills the difference on a debit memo: the quantities
        # match again, the memo waits in the outbox, and the exceptions close.
        rerun = await c.billing_runs.run(period)
        assert rerun.counts.corrected == 1, rerun.counts
        report = (await client.get(f"{RECONCILE}/{period}")).json()
        assert report["status"] == "balanced", report["variances"]
        assert quantities(report)["cus_de", "storage"] == (D(200), D(200), D(0))
        memo = next(d for d in report["documents"] if d["kind"] == "debit_memo")
        assert memo["status"] == "pending" and memo["erp_total"] is None
        assert report["summary"]["pending_documents"] == 1
        assert await open_variances(client) == {}
        closed = (await client.get(EXCEPTIONS, params={"kind": KIND, "status": "resolved"})).json()
        assert {e["context"]["subject"] for e in closed["data"]} == {calls, storage}


async def test_unposted_documents_are_pending_and_unbilled_subscriptions_are_listed(
    database_url,
):
    period = last_month()
    async with client_for(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await usage(client, period)
        await bill(c, period, post=False)
        # A subscription the period's run did not bill (it did not exist yet).
        await c.crm.put_customer(
            msgspec.structs.replace(await c.crm.get_customer("cus_de"), id="cus_new")
        )
        subscription = await c.crm.get_subscription("sub_cus_de")
        await c.crm.put_subscription(
            msgspec.structs.replace(subscription, id="sub_new", customer_id="cus_new")
        )

        report = (await client.get(f"{RECONCILE}/{period}")).json()
        assert report["status"] == "balanced", report["variances"]
        assert {d["status"] for d in report["documents"]} == {"pending"}
        assert all(d["erp_total"] is None for d in report["documents"])
        assert report["summary"]["pending_documents"] == 2
        assert report["uninvoiced"] == [{"subscription_id": "sub_new", "customer_id": "cus_new"}]
        assert "cus_new" not in {r["customer_id"] for r in report["quantities"]}
        assert await open_variances(client) == {}


async def test_an_amended_period_reconciles_non_additive_meters_per_segment(database_url):
    period = last_month()
    async with client_for(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await c.billing.put_plan(PLAN_B)
        cut = period.first_day + timedelta(days=15)
        await c.crm.add_amendment("sub_cus_de", Amendment(effective_from=cut, plan_id=PLAN_B.id))
        before, after = period.start + timedelta(days=2), period.start + timedelta(days=20)
        await send(
            client,
            [
                event("a-1", "cus_de", "storage.snapshot", before, gb=100),
                event("a-2", "cus_de", "storage.snapshot", after, gb=80),
                event("a-3", "cus_de", "user.active", before, user_id="u1"),
                event("a-4", "cus_de", "user.active", after, user_id="u1"),
            ],
        )
        invoices = await bill(c, period)
        storage_lines = [
            line.quantity for line in invoices["cus_de"].lines if line.meter_code == "storage"
        ]
        assert sorted(storage_lines) == [D(80), D(100)]  # one peak per segment

        report = (await client.get(f"{RECONCILE}/{period}")).json()
        assert report["status"] == "balanced", report["variances"]
        figures = quantities(report)
        # Peaks and distinct users per segment, as billed (a whole-month max would be 100).
        assert figures["cus_de", "storage"] == (D(180), D(180), D(0))
        assert figures["cus_de", "users"] == (D(2), D(2), D(0))


class TamperedErp:
    """The ERP port with its answers altered: documents hidden (``hide``, by external
    ref), totals shifted (``shift``), an ``extra`` document listed, and a ledger that
    no longer sums to zero (``drift``)."""

    def __init__(self, erp, *, hide=(), shift=None, extra=None, drift=None) -> None:
        self._erp = erp
        self._hide = set(hide)
        self._shift = shift or {}
        self._extra = extra
        self._drift = drift

    def __getattr__(self, name):
        return getattr(self._erp, name)

    def _alter(self, document: ErpDocument) -> ErpDocument:
        delta = self._shift.get(document.external_ref)
        return (
            msgspec.structs.replace(document, total=document.total + delta) if delta else document
        )

    async def find_document(self, external_ref: str):
        if external_ref in self._hide:
            return None
        found = await self._erp.find_document(external_ref)
        return self._alter(found) if found else None

    async def list_documents(self, *, limit=50, starting_after=None, customer_id=None):
        page, more = await self._erp.list_documents(
            limit=limit, starting_after=starting_after, customer_id=customer_id
        )
        page = [self._alter(d) for d in page if d.external_ref not in self._hide]
        extra = self._extra
        if extra and starting_after is None and customer_id == extra.customer_id:
            page.append(extra)
        return page, more

    async def account_balances(self, legal_entity_id=None, currency=None):
        balances = await self._erp.account_balances(legal_entity_id, currency)
        return {**balances, "9999": self._drift} if self._drift else balances


def _manual_document(period: Period) -> ErpDocument:
    """A document keyed in by hand in the ERP, that Meterline never issued."""
    lines = [
        JournalLine(account="1200", debit=D("11.90"), credit=D(0)),
        JournalLine(account="4100", debit=D(0), credit=D("10.00")),
        JournalLine(account="2200", debit=D(0), credit=D("1.90")),
    ]
    day = period.end.date() - timedelta(days=1)
    return ErpDocument(
        id="doc_manual",
        external_ref="manual-1",
        kind="invoice",
        customer_id="cus_de",
        legal_entity_id="le_de",
        currency="EUR",
        posting_date=day,
        net_total=D("10.00"),
        tax_total=D("1.90"),
        total=D("11.90"),
        journal=JournalEntry(
            id="je_manual", document_id="doc_manual", posting_date=day, currency="EUR", lines=lines
        ),
        correlation_id=None,
        created_at=utcnow(),
    )


async def test_erp_side_differences_are_variances_and_close_once_gone(database_url):
    period = last_month()
    async with client_for(database_url) as client:
        c = client.container
        await seed(c, PLAN)
        await usage(client, period)
        invoices = await bill(c, period)
        de, fr = invoices["cus_de"].id, invoices["cus_fr"].id
        tampered = TamperedErp(
            c.erp,
            hide={de},
            shift={fr: D("-1.00")},
            extra=_manual_document(period),
            drift=D("0.01"),
        )

        report = await ReconciliationService(c.sessions, tampered, c.billing, c.crm).reconcile(
            period
        )
        assert report.status == "variances"
        found = {v.subject: v for v in report.variances}
        ledger = f"{period}:ledger:le_de:EUR"
        assert {s: v.kind for s, v in found.items()} == {
            f"{period}:{de}": "document_missing",
            f"{period}:{fr}": "document_mismatch",
            f"{period}:doc_manual": "unexpected_document",
            ledger: "journal_unbalanced",
        }
        assert "total 48.00 in the ERP, 49.00 in Meterline" in found[f"{period}:{fr}"].detail
        documents = {d.invoice_id: d for d in report.documents}
        assert (documents[de].status, documents[de].erp_total) == ("variance", None)
        assert (documents[fr].status, documents[fr].difference) == ("variance", D("1.00"))
        assert report.ledgers[0].imbalance == D("0.01") and not report.ledgers[0].balanced
        # The quantities are untouched by the ERP's answers.
        assert all(row.status == "matched" for row in report.quantities)

        raised = await open_variances(client)
        assert set(raised) == set(found)
        mismatch = raised[f"{period}:{fr}"]["context"]
        assert (mismatch["total"], mismatch["erp_total"], mismatch["difference"]) == (
            "49.00",
            "48.00",
            "1.00",
        )
        assert mismatch["invoice_id"] == fr and mismatch["variance"] == "document_mismatch"

        # The ERP answers truly again (through the gateway's own port): all variances close.
        report = (await client.get(f"{RECONCILE}/{period}")).json()
        assert report["status"] == "balanced", report["variances"]
        assert await open_variances(client) == {}


async def test_a_period_that_is_not_a_month_is_a_problem(database_url):
    async with client_for(database_url) as client:
        response = await client.get(f"{RECONCILE}/2024-13")
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
