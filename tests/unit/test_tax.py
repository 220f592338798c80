"""The tax rules, one by one, with amounts worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.errors import BusinessRuleViolation, InvalidRequest
from system_apis.tax.port import TaxableLine, TaxRequest, UsState, to_wire
from system_apis.tax.reference.rates import EU_MEMBER_STATES, STANDARD_RATES, US_STATE_RATES
from system_apis.tax.reference.rules import check_vat, tax_lines

D = Decimal
TODAY = date(2025, 3, 15)
VALID_DE_VAT = "DE136695976"
BAD_CHECKSUM_DE_VAT = "DE136695977"


def request(seller="DE", customer="DE", *amounts, **fields) -> TaxRequest:
    lines = [
        TaxableLine(reference=f"l{i}", item_code="API", amount=D(a))
        for i, a in enumerate(amounts or ["100.00"])
    ]
    fields.setdefault("currency", "EUR")
    return TaxRequest(seller_country=seller, customer_country=customer, lines=lines, **fields)


def quote(*args, today=TODAY, **fields):
    return tax_lines(request(*args, **fields), today)


def test_exempt_customers_pay_nothing_whatever_the_route():
    for seller, customer in [("DE", "DE"), ("US", "US"), ("FR", "DE")]:
        [line] = quote(seller, customer, customer_tax_status="exempt", customer_us_state="CA")
        assert (line.rate, line.amount, line.kind) == (D(0), D("0.00"), "exempt")


def test_domestic_sale_uses_the_country_standard_rate():
    lines = quote("DE", "DE", "100.00", "0.05", "-100.00")
    assert [(t.rate, t.amount) for t in lines] == [
        (D("0.19"), D("19.00")),
        (D("0.19"), D("0.01")),  # 0.0095 -> 0.01 half up
        (D("0.19"), D("-19.00")),  # credit lines carry negative tax
    ]
    assert {(t.kind, t.jurisdiction, t.note) for t in lines} == {("domestic", "DE", None)}
    [ch] = quote("CH", "CH", "100.00", currency="CHF")
    assert (ch.rate, ch.amount) == (D("0.081"), D("8.10"))
    [gb] = quote("GB", "GB", "12.34", currency="GBP")
    assert gb.amount == D("2.47")  # 12.34 x 0.20 = 2.468


def test_one_tax_line_per_input_line_in_the_same_order():
    amounts = ["1.00", "2.00", "3.00", "0.00"]
    assert [t.amount for t in quote("FR", "FR", *amounts)] == [
        D("0.20"),
        D("0.40"),
        D("0.60"),
        D("0.00"),
    ]


def test_zero_tax_is_never_negative_zero():
    [line] = quote("DE", "US", "-50.00")
    assert str(line.amount) == "0.00"


def test_domestic_rates_follow_their_effective_dates():
    def ee(day):
        return quote("EE", "EE", today=day)[0].rate

    assert ee(date(2023, 12, 31)) == D("0.20")
    assert ee(date(2024, 1, 1)) == D("0.22")
    assert ee(date(2025, 6, 30)) == D("0.22")
    assert ee(date(2025, 7, 1)) == D("0.24")
    # the request's tax date wins over today
    [fi] = quote("FI", "FI", tax_date=date(2024, 8, 31), today=date(2025, 1, 1))
    assert fi.rate == D("0.24")
    assert quote("LU", "LU", today=date(2023, 6, 1))[0].rate == D("0.16")
    assert quote("LU", "LU", today=date(2024, 6, 1))[0].rate == D("0.17")


def test_eu_b2b_with_a_valid_vat_number_is_reverse_charged():
    [line] = quote("FR", "DE", "100.00", customer_tax_id=VALID_DE_VAT)
    assert (line.rate, line.amount, line.kind, line.jurisdiction) == (
        D(0),
        D("0.00"),
        "reverse_charge",
        "DE",
    )
    assert "Art. 196 Directive 2006/112/EC" in line.note
    assert VALID_DE_VAT in line.note


def test_vat_numbers_are_read_with_separators_or_without_their_prefix():
    for written in ("DE 136 695 976", "de136.695.976", "136695976"):
        [line] = quote("FR", "DE", customer_tax_id=written)
        assert line.kind == "reverse_charge", written
    [greek] = quote("DE", "GR", customer_tax_id="EL094259216")  # Greece uses EL
    assert greek.kind == "reverse_charge"


def test_eu_sale_without_a_valid_vat_number_is_taxed_where_the_customer_is():
    for tax_id in (None, BAD_CHECKSUM_DE_VAT, "FR40303265045"):  # none, bad, another state's
        [line] = quote("FR", "DE", "100.00", customer_tax_id=tax_id)
        assert (line.rate, line.amount, line.kind, line.jurisdiction) == (
            D("0.19"),
            D("19.00"),
            "oss",
            "DE",
        )
    [at] = quote("DE", "AT", "33.33")
    assert (at.rate, at.amount) == (D("0.20"), D("6.67"))  # 6.666 -> 6.67


def test_domestic_b2b_is_not_reverse_charged():
    [line] = quote("DE", "DE", customer_tax_id=VALID_DE_VAT)
    assert (line.kind, line.rate) == ("domestic", D("0.19"))


def test_us_sales_use_the_customer_state_rate():
    [ca] = quote("US", "US", "19.99", currency="USD", customer_us_state="CA")
    assert (ca.rate, ca.amount, ca.kind, ca.jurisdiction) == (
        D("0.0725"),
        D("1.45"),
        "us_state",
        "US-CA",
    )  # 1.449275 -> 1.45
    [mo] = quote("US", "US", "100.00", currency="USD", customer_us_state="MO")
    assert mo.amount == D("4.23")  # 4.225 -> 4.23 half up (even would give 4.22)
    [oregon] = quote("US", "US", "100.00", currency="USD", customer_us_state="OR")
    assert (oregon.rate, oregon.amount) == (D(0), D("0.00"))


def test_us_sale_without_a_known_state_is_refused():
    with pytest.raises(BusinessRuleViolation):
        quote("US", "US", currency="USD")
    with pytest.raises(BusinessRuleViolation):
        quote("US", "US", currency="USD", customer_us_state="PR")


@pytest.mark.parametrize(
    ("seller", "customer"),
    [("DE", "US"), ("US", "DE"), ("GB", "FR"), ("DE", "CH"), ("CH", "DE"), ("US", "CA")],
)
def test_other_cross_border_sales_are_exports(seller, customer):
    [line] = quote(seller, customer, "100.00", customer_us_state="CA")
    assert (line.rate, line.amount, line.kind, line.jurisdiction) == (
        D(0),
        D("0.00"),
        "export",
        customer,
    )


def test_a_domestic_sale_in_an_untabled_country_is_refused_not_taxed_at_zero():
    with pytest.raises(BusinessRuleViolation):
        quote("ZZ", "ZZ")


def test_zero_decimal_currencies_round_to_whole_units():
    [line] = quote("JP", "JP", "1005", currency="JPY")
    assert str(line.amount) == "101"  # 100.5 -> 101


def test_unreadable_requests_are_invalid():
    with pytest.raises(InvalidRequest):
        quote(currency="EUX")
    with pytest.raises(InvalidRequest):
        quote("de", "DE")
    with pytest.raises(InvalidRequest):
        quote("DE", "DE", "NaN")


def test_rate_tables_cover_the_required_jurisdictions():
    assert len(EU_MEMBER_STATES) == 27
    assert EU_MEMBER_STATES | {"GB", "CH", "NO"} <= STANDARD_RATES.keys()
    assert set(US_STATE_RATES) == set(get_args(UsState))
    assert len(US_STATE_RATES) == 51
    assert {s for s, r in US_STATE_RATES.items() if r == 0} == {"AK", "DE", "MT", "NH", "OR"}


# --- VAT numbers ---------------------------------------------------------------------


def test_a_real_german_vat_number_is_valid_and_a_bad_checksum_is_not():
    check = check_vat(VALID_DE_VAT)
    assert (check.valid, check.country, check.normalized) == (True, "DE", VALID_DE_VAT)
    bad = check_vat(BAD_CHECKSUM_DE_VAT)
    assert (bad.valid, bad.country, bad.normalized) == (False, None, None)
    assert bad.vat_id == BAD_CHECKSUM_DE_VAT


def test_vat_check_normalizes_and_maps_prefixes_to_countries():
    assert check_vat("de 136.695.976").normalized == VALID_DE_VAT
    assert check_vat("EL094259216").country == "GR"
    assert not check_vat("136695976").valid  # no prefix: not a VAT number on its own


@given(st.text(max_size=40))
def test_vat_check_never_raises(text):
    assert check_vat(text).vat_id == text


def test_wire_form_of_amounts_never_uses_exponents():
    body = to_wire(request("DE", "DE", "1E+3", "0.000000000000000", "-2.50"))
    assert [line["amount"] for line in body["lines"]] == ["1000", "0", "-2.50"]
