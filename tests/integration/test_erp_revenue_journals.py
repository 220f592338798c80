"""Revenue recognition journals in the reference ERP, on SQLite and PostgreSQL: the entry
they book against the contract balance, idempotency by external_ref, the booking rules,
and the same port through the System API routes and the HTTP adapter."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.model import ErpItem, JournalLine, LegalEntity, RevenueJournal, RevenueJournalLine
from system_apis.erp.http import HttpErp
from system_apis.erp.reference import ReferenceErp
from system_apis.erp.routes import router
from tests.support.problems import assert_problem
from tests.support.systems import remote_system, system_app, system_client


@pytest.fixture
async def erp(sessions):
    erp = ReferenceErp(sessions)
    await erp.put_legal_entity(
        LegalEntity(id="le_de", name="Meterline GmbH", country="DE", currency="EUR")
    )
    await erp.put_item(ErpItem(code="calls", name="API calls", revenue_account="4000"))
    await erp.put_item(ErpItem(code="platform", name="Platform", revenue_account="4100"))
    return erp


def journal(ref: str = "rvj_1", **lines: str) -> RevenueJournal:
    return RevenueJournal(
        external_ref=ref,
        legal_entity_id="le_de",
        currency="EUR",
        posting_date=date(2025, 3, 10),
        description="Revenue recognised on 2025-03-10",
        lines=[RevenueJournalLine(item_code=k, amount=D(v)) for k, v in lines.items()],
    )


async def test_recognition_moves_revenue_out_of_the_contract_balance(erp):
    booked = await erp.post_revenue_journal(journal(calls="0.97", platform="-0.50"))
    # Cr 4000 0.97, Dr 4100 0.50 (a reversal), Dr 2400 by the net 0.47.
    assert booked.lines == [
        JournalLine(account="4000", debit=D("0.00"), credit=D("0.97")),
        JournalLine(account="4100", debit=D("0.50"), credit=D("0.00")),
        JournalLine(account="2400", debit=D("0.47"), credit=D("0.00")),
    ]
    assert await erp.account_balances("le_de", "EUR") == {
        "2400": D("0.47"),
        "4000": D("-0.97"),
        "4100": D("0.50"),
    }
    # The same ref again is the same journal, booked once.
    assert await erp.post_revenue_journal(journal(calls="0.97", platform="-0.50")) == booked
    assert await erp.find_revenue_journal("rvj_1") == booked
    assert await erp.find_revenue_journal("rvj_none") is None
    assert (await erp.account_balances("le_de", "EUR"))["2400"] == D("0.47")


async def test_booking_rules(erp):
    await erp.set_period_status("le_de", "2025-03", "closed")
    with pytest.raises(BusinessRuleViolation) as closed:
        await erp.post_revenue_journal(journal(calls="1.00"))
    assert closed.value.code == "period_closed"
    await erp.set_period_status("le_de", "2025-03", "open")
    for bad, code in (
        (journal(nope="1.00"), "unknown_item"),
        (journal(calls="0.001"), "amount_not_rounded"),
    ):
        with pytest.raises(BusinessRuleViolation) as refused:
            await erp.post_revenue_journal(bad)
        assert refused.value.code == code
    with pytest.raises(InvalidRequest):
        await erp.post_revenue_journal(journal())
    assert await erp.account_balances("le_de", "EUR") == {}


async def test_the_system_api_and_http_adapter_book_the_same_journal(engine, erp):
    app = system_app(router, engine=engine, erp=erp)
    async with remote_system("erp", app) as remote:
        http = HttpErp(remote)
        booked = await http.post_revenue_journal(journal(calls="2.50"))
        assert booked == await erp.find_revenue_journal("rvj_1")
        assert await http.find_revenue_journal("rvj_1") == booked
        assert await http.find_revenue_journal("rvj_2") is None
        with pytest.raises(BusinessRuleViolation):
            await http.post_revenue_journal(journal("rvj_3", nope="1.00"))


async def test_the_route_refuses_a_malformed_journal(engine, erp):
    body = {
        "external_ref": "rvj_9",
        "legal_entity_id": "le_de",
        "currency": "EUR",
        "posting_date": "2025-03-10",
        "description": "Revenue",
        "lines": [{"item_code": "calls", "amount": "1.00"}],
    }
    async with system_client(system_app(router, engine=engine, erp=erp), engine) as client:
        for bad in ({"lines": []}, {"currency": "EURO"}, {"lines": [{"item_code": "calls"}]}):
            response = await client.post("/system/erp/v1/revenue-journals", json=body | bad)
            assert_problem(response, 400)
        lookup = await client.get(
            "/system/erp/v1/revenue-journals/lookup", params={"external_ref": "rvj_9"}
        )
        assert_problem(lookup, 404, "journal_not_found")
        booked = await client.post("/system/erp/v1/revenue-journals", json=body)
        assert booked.status_code == 201, booked.text
        assert booked.json()["lines"][0] == {"account": "4000", "debit": "0.00", "credit": "1.00"}
