"""Fault injection for the reference ERP (system_apis/erp/reference/faults.py): each
fault kind, seeded repeatability, the ambiguous commit that really commits (postings and
payments), maintenance on a fake clock, the quota, and the settings string."""

from __future__ import annotations

import inspect
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from canonical.errors import (
    AmbiguousCommit,
    BusinessRuleViolation,
    SystemThrottled,
    SystemUnavailable,
)
from canonical.model import (
    ErpInvoice,
    ErpInvoiceLine,
    ErpItem,
    ErpPaymentIn,
    RevenueJournal,
    RevenueJournalLine,
)
from canonical.persistence import create_engine, session_factory
from system_apis.erp.port import ErpPort
from system_apis.erp.reference import ReferenceErp
from system_apis.erp.reference.faults import ErpFaults, FaultyErp, MaintenanceWindow
from tests.support.seeding import SELLER

START = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
END = START + timedelta(minutes=5)


def invoice(ref: str = "inv_1") -> ErpInvoice:
    return ErpInvoice(
        external_ref=ref,
        kind="invoice",
        customer_id="cus_a",
        customer_name="Acme GmbH",
        legal_entity_id=SELLER.id,
        currency="EUR",
        posting_date=date(2025, 3, 31),
        lines=[
            ErpInvoiceLine(
                item_code="calls", description="API", amount=D("100.00"), tax_amount=D("19.00")
            )
        ],
    )


def payment(document_id: str = "doc_1", ref: str = "bank_1") -> ErpPaymentIn:
    return ErpPaymentIn(
        external_ref=ref,
        document_id=document_id,
        amount=D("119.00"),
        currency="EUR",
        received_on=date(2025, 4, 15),
    )


def journal(ref: str = "rvj_1") -> RevenueJournal:
    return RevenueJournal(
        external_ref=ref,
        legal_entity_id="le_de",
        currency="EUR",
        posting_date=date(2025, 4, 1),
        description="Revenue recognised on 2025-04-01",
        lines=[RevenueJournalLine(item_code="calls", amount=D("1.00"))],
    )


# One call of every port method: name -> (args, kwargs).
CALLS = {
    "put_legal_entity": ((SELLER,), {}),
    "get_legal_entity": (("le_de",), {}),
    "list_legal_entities": ((), {}),
    "put_item": ((ErpItem(code="calls", name="Calls", revenue_account="4000"),), {}),
    "list_items": ((), {}),
    "set_period_status": (("le_de", "2025-03", "open"), {}),
    "get_period": (("le_de", "2025-03"), {}),
    "post_invoice": ((invoice(),), {}),
    "find_document": (("inv_1",), {}),
    "get_document": (("doc_1",), {}),
    "list_documents": ((), {"limit": 10, "starting_after": None, "customer_id": "cus_a"}),
    "record_payment": ((payment(),), {}),
    "list_payments": ((), {"after": "pay_1", "limit": 10}),
    "post_revenue_journal": ((journal(),), {}),
    "find_revenue_journal": (("rvj_1",), {}),
    "account_balances": (("le_de", "EUR"), {}),
}
# The writes a caller repeats by external_ref: the only calls whose answer may be lost.
AMBIGUOUS_WRITES = ["post_invoice", "record_payment", "post_revenue_journal"]
READS_AND_MASTER_DATA = [name for name in CALLS if name not in AMBIGUOUS_WRITES]


class FakeErp:
    """Answers every port method with ``(name, args, kwargs)`` and records the names."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        async def method(*args, **kwargs):
            self.calls.append(name)
            return (name, args, kwargs)

        return method


class Sleeps:
    """Stands in for ``asyncio.sleep``: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def call(erp, name: str):
    args, kwargs = CALLS[name]
    return await getattr(erp, name)(*args, **kwargs)


async def outcome(erp, name: str) -> str:
    try:
        await call(erp, name)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


def port_methods() -> list[str]:
    return [n for n, f in vars(ErpPort).items() if inspect.iscoroutinefunction(f)]


# --- the port ---------------------------------------------------------------------------


def test_wraps_every_port_method_with_the_same_signature():
    assert sorted(port_methods()) == sorted(CALLS)
    for name in port_methods():
        ours = getattr(FaultyErp, name)
        assert inspect.iscoroutinefunction(ours), name
        assert inspect.signature(ours) == inspect.signature(getattr(ErpPort, name)), name


async def test_without_faults_every_call_goes_straight_through():
    def no_clock():
        raise AssertionError("the clock is read without maintenance windows")

    async def no_sleep(seconds):
        raise AssertionError("slept without latency")

    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(seed=1), clock=no_clock, sleep=no_sleep)
    assert not erp.faults.active
    for name, (args, kwargs) in CALLS.items():
        assert await call(erp, name) == (name, args, kwargs)
    assert inner.calls == list(CALLS)
    assert erp.stats == {"calls": len(CALLS)}


async def test_inner_errors_pass_unchanged_and_a_failed_post_is_never_ambiguous():
    class Refusing(FakeErp):
        async def post_invoice(self, invoice):
            raise BusinessRuleViolation("closed", code="period_closed")

        async def record_payment(self, payment):
            raise BusinessRuleViolation("too much", code="overpayment")

    erp = FaultyErp(Refusing(), ErpFaults(ambiguous_rate=1))
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.post_invoice(invoice())
    assert caught.value.code == "period_closed"
    with pytest.raises(BusinessRuleViolation) as caught:
        await erp.record_payment(payment())
    assert caught.value.code == "overpayment"
    assert erp.stats["ambiguous"] == 0


# --- latency ----------------------------------------------------------------------------


async def test_latency_is_added_before_every_call():
    sleeps = Sleeps()
    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(latency_ms=5), sleep=sleeps)
    for name in CALLS:
        await call(erp, name)
    assert sleeps.delays == [0.005] * len(CALLS)
    assert erp.stats["delayed"] == len(CALLS)
    assert inner.calls == list(CALLS)


async def test_latency_jitter_stays_within_its_bound_and_varies():
    sleeps = Sleeps()
    erp = FaultyErp(FakeErp(), ErpFaults(latency_ms=10, latency_jitter_ms=5, seed=3), sleep=sleeps)
    for _ in range(20):
        await call(erp, "find_document")
    assert all(0.010 <= d <= 0.015 for d in sleeps.delays)
    assert len(set(sleeps.delays)) > 10


# --- errors (503) -----------------------------------------------------------------------


async def test_error_rate_one_answers_every_call_unavailable_without_calling_the_erp():
    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(error_rate=1))
    for name in CALLS:
        with pytest.raises(SystemUnavailable) as caught:
            await call(erp, name)
        assert caught.value.transient
        assert caught.value.system == "erp"
    assert inner.calls == []
    assert erp.stats["unavailable"] == len(CALLS)


async def test_error_rate_fails_about_that_share_of_calls():
    erp = FaultyErp(FakeErp(), ErpFaults(error_rate=0.25, seed=11))
    outcomes = [await outcome(erp, "get_legal_entity") for _ in range(400)]
    failed = outcomes.count("SystemUnavailable")
    assert 60 <= failed <= 140  # 100 expected
    assert failed + outcomes.count("ok") == 400
    assert erp.stats["unavailable"] == failed


# --- seeded repeatability ---------------------------------------------------------------


async def _run(seed: int) -> tuple[list[str], list[float]]:
    sleeps = Sleeps()
    faults = ErpFaults(latency_jitter_ms=10, error_rate=0.3, ambiguous_rate=0.3, seed=seed)
    erp = FaultyErp(FakeErp(), faults, sleep=sleeps)
    outcomes = [await outcome(erp, name) for _ in range(10) for name in CALLS]
    return outcomes, sleeps.delays


async def test_the_same_seed_repeats_the_same_faults():
    first = await _run(42)
    assert first == await _run(42)
    assert {"ok", "SystemUnavailable", "AmbiguousCommit"} <= set(first[0])
    assert first != await _run(43)


# --- ambiguous commits ------------------------------------------------------------------


@pytest.fixture
async def reference_erp(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        yield ReferenceErp(session_factory(engine))
    finally:
        await engine.dispose()


async def test_ambiguous_commit_commits_in_the_erp_and_loses_the_answer(reference_erp):
    erp = FaultyErp(reference_erp, ErpFaults(ambiguous_rate=1))
    # Master data writes and reads are never ambiguous.
    await erp.put_legal_entity(SELLER)
    await erp.put_item(ErpItem(code="calls", name="Calls", revenue_account="4000"))
    assert await erp.find_document("inv_1") is None

    with pytest.raises(AmbiguousCommit) as caught:
        await erp.post_invoice(invoice("inv_1"))
    assert caught.value.transient and caught.value.system == "erp"
    found = await erp.find_document("inv_1")
    assert found is not None and found.external_ref == "inv_1"
    # A retry commits nothing new (the ERP is idempotent by external_ref).
    with pytest.raises(AmbiguousCommit):
        await erp.post_invoice(invoice("inv_1"))
    documents, _ = await reference_erp.list_documents()
    assert [d.id for d in documents] == [found.id]
    assert erp.stats["ambiguous"] == 2

    # A payment the same way: committed, answer lost, a resend records nothing new.
    with pytest.raises(AmbiguousCommit):
        await erp.record_payment(payment(found.id))
    recorded, more = await erp.list_payments()
    assert [p.external_ref for p in recorded] == ["bank_1"] and not more
    with pytest.raises(AmbiguousCommit):
        await erp.record_payment(payment(found.id))
    assert await erp.list_payments() == (recorded, False)
    assert (await erp.get_document(found.id)).amount_paid == D("119.00")
    assert erp.stats["ambiguous"] == 4


async def test_ambiguity_strikes_only_postings_and_payments():
    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(ambiguous_rate=1))
    for name in READS_AND_MASTER_DATA:
        assert (await call(erp, name))[0] == name
    for name in AMBIGUOUS_WRITES:
        with pytest.raises(AmbiguousCommit):
            await call(erp, name)
        assert inner.calls[-1] == name  # the inner ERP did take it
    assert erp.stats["ambiguous"] == len(AMBIGUOUS_WRITES)


# --- maintenance ------------------------------------------------------------------------


async def test_maintenance_window_refuses_every_call_from_start_to_end():
    clock = FakeClock(START - timedelta(seconds=1))
    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(maintenance=(MaintenanceWindow(START, END),)), clock=clock)
    assert await outcome(erp, "post_invoice") == "ok"

    clock.now = START
    for name in CALLS:
        with pytest.raises(SystemUnavailable) as caught:
            await call(erp, name)
        assert caught.value.retry_after == 300
        assert "maintenance" in caught.value.detail
    clock.now = END - timedelta(seconds=30)
    with pytest.raises(SystemUnavailable) as caught:
        await call(erp, "find_document")
    assert caught.value.retry_after == 30

    clock.now = END  # the window is half-open
    assert await outcome(erp, "find_document") == "ok"
    assert inner.calls == ["post_invoice", "find_document"]
    assert erp.stats["maintenance"] == len(CALLS) + 1


# --- quota (429) ------------------------------------------------------------------------


async def test_quota_throttles_calls_beyond_it_with_a_retry_after():
    inner = FakeErp()
    erp = FaultyErp(inner, ErpFaults(quota_per_second=2))
    assert await outcome(erp, "find_document") == "ok"
    assert await outcome(erp, "post_invoice") == "ok"
    with pytest.raises(SystemThrottled) as caught:
        await call(erp, "get_legal_entity")
    assert 0 < caught.value.retry_after <= 1
    assert caught.value.transient and caught.value.system == "erp"
    assert inner.calls == ["find_document", "post_invoice"]
    assert erp.stats["throttled"] == 1


async def test_a_fractional_quota_spreads_over_a_longer_window():
    erp = FaultyErp(FakeErp(), ErpFaults(quota_per_second=0.1))  # one call per 10 s
    assert await outcome(erp, "list_items") == "ok"
    with pytest.raises(SystemThrottled) as caught:
        await call(erp, "list_items")
    assert 1 < caught.value.retry_after <= 10


# --- the settings string ----------------------------------------------------------------


def test_parse_reads_every_key():
    faults = ErpFaults.parse(
        "latency_ms=5, latency_jitter_ms=2,error_rate=0.1,quota_per_second=20,"
        "ambiguous_rate=0.05,seed=7,maintenance=2026-11-21T10:00:00Z/2026-11-21T10:05:00Z,"
        "maintenance=2026-11-22T12:00:00+02:00/2026-11-22T13:00:00+02:00,"
    )
    assert faults == ErpFaults(
        latency_ms=5,
        latency_jitter_ms=2,
        error_rate=0.1,
        quota_per_second=20,
        ambiguous_rate=0.05,
        seed=7,
        maintenance=(
            MaintenanceWindow(START, END),
            MaintenanceWindow(
                datetime(2026, 11, 22, 10, tzinfo=UTC), datetime(2026, 11, 22, 11, tzinfo=UTC)
            ),
        ),
    )
    assert faults.maintenance[1].start.utcoffset() == timedelta(0)
    assert faults.active


def test_parse_of_nothing_is_no_faults():
    assert ErpFaults.parse("") == ErpFaults()
    assert ErpFaults.parse(" ") == ErpFaults()
    assert not ErpFaults.parse("").active


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency=5", "unknown key 'latency'"),
        ("error_rate", "expected key=value"),
        ("error_rate=", "expected key=value"),
        ("error_rate=lots", "error_rate must be a number, got 'lots'"),
        ("error_rate=1.5", "error_rate must be a number between 0 and 1"),
        ("ambiguous_rate=-0.1", "ambiguous_rate must be a number between 0 and 1"),
        ("latency_ms=-1", "latency_ms must be a number at least 0"),
        ("latency_ms=nan", "latency_ms must be a number"),
        ("latency_jitter_ms=inf", "latency_jitter_ms must be a number"),
        ("quota_per_second=0", "quota_per_second must be a number at least"),
        ("seed=1.5", "seed must be an integer"),
        ("error_rate=0.1,error_rate=0.2", "error_rate given twice"),
        ("maintenance=2026-11-21T10:00:00Z", "bad maintenance window.*START/END"),
        ("maintenance=2026-11-21T10:00:00/2026-11-21T10:05:00", "need a time zone"),
        ("maintenance=2026-11-21T10:05:00Z/2026-11-21T10:00:00Z", "must end after it starts"),
        ("maintenance=yesterday/today", "bad maintenance window"),
    ],
)
def test_parse_refuses_bad_input_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        ErpFaults.parse(text)


def test_faults_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="error_rate"):
        ErpFaults(error_rate=2)
    with pytest.raises(ValueError, match="timezone-aware"):
        MaintenanceWindow(datetime(2026, 1, 1), datetime(2026, 1, 2))
