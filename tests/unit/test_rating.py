"""The rating function, charge model by charge model.

Every expected amount is worked out by hand from the rules in the comment beside it,
never by calling the code under test a second time."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.model import (
    FlatCharge,
    GraduatedCharge,
    MinimumCommitment,
    PackageCharge,
    PerUnitCharge,
    PricePlan,
    Tier,
    VolumeCharge,
)
from system_apis.billing.reference.rating import graduated_amount, rate_plan
from system_apis.billing.reference.validation import check_plan

D = Decimal
APRIL = (date(2024, 4, 1), date(2024, 5, 1))  # 30 days


def plan(*charges, currency="EUR") -> PricePlan:
    return PricePlan(id="plan_t", code="t", name="Test", currency=currency, charges=list(charges))


def rate(p: PricePlan, quantities=None, service=APRIL, period=APRIL):
    return rate_plan(
        p,
        period_start=period[0],
        period_end=period[1],
        service_start=service[0],
        service_end=service[1],
        quantities={k: D(v) for k, v in (quantities or {}).items()},
    )


def amounts(p: PricePlan, quantities=None, **kw) -> list[Decimal]:
    return [c.amount for c in rate(p, quantities, **kw)]


def per_unit(price: str, meter="calls", code="calls") -> PerUnitCharge:
    return PerUnitCharge(
        code=code, description="Calls", item_code="API", meter_code=meter, unit_price=D(price)
    )


# 0-100 @0.10, 101-1000 @0.08 plus a flat fee of 5, above 1000 @0.05
TIERS = [
    Tier(unit_price=D("0.10"), up_to=D(100)),
    Tier(unit_price=D("0.08"), up_to=D(1000), flat_fee=D(5)),
    Tier(unit_price=D("0.05")),
]


def graduated(tiers=TIERS) -> GraduatedCharge:
    return GraduatedCharge(
        code="calls", description="Calls", item_code="API", meter_code="calls", tiers=tiers
    )


def volume(tiers=TIERS) -> VolumeCharge:
    return VolumeCharge(
        code="calls", description="Calls", item_code="API", meter_code="calls", tiers=tiers
    )


# --- per unit ------------------------------------------------------------------------


def test_per_unit_is_quantity_times_price():
    [line] = rate(plan(per_unit("0.015")), {"calls": "1234"})
    assert line.amount == D("18.51")  # 1234 x 0.015 = 18.510
    assert (line.quantity, line.unit_price, line.kind) == (D(1234), D("0.015"), "usage")
    assert (line.meter_code, line.currency, line.item_code) == ("calls", "EUR", "API")


def test_line_amounts_round_half_up_not_half_even():
    assert amounts(plan(per_unit("0.125")), {"calls": "1"}) == [D("0.13")]  # even: 0.12
    assert amounts(plan(per_unit("0.0249")), {"calls": "1"}) == [D("0.02")]


def test_twelve_decimal_unit_prices_are_kept_exactly_until_the_one_rounding():
    # 0.000000000005 x 1,000,000,000 = 0.005 -> 0.01 (HALF_UP; a float would drift)
    assert amounts(plan(per_unit("0.000000000005")), {"calls": "1000000000"}) == [D("0.01")]
    # 0.123456789012 x 1000 = 123.456789012 -> 123.46
    assert amounts(plan(per_unit("0.123456789012")), {"calls": "1000"}) == [D("123.46")]
    # 0.000000000001 x 4,999,999,999 = 0.004999999999 -> 0.00
    assert amounts(plan(per_unit("0.000000000001")), {"calls": "4999999999"}) == [D("0.00")]


def test_huge_quantities_times_twelve_dp_prices_lose_no_digit():
    qty, price = "999999999999999999", "999999999999999999.999999999999"
    exact = Fraction(qty) * Fraction(price)  # computed outside Decimal entirely
    cents = (exact * 100 + Fraction(1, 2)).__floor__()  # half up, positive amount
    [amount] = amounts(plan(per_unit(price)), {"calls": qty})
    assert str(amount) == f"{cents // 100}.{cents % 100:02d}"  # all 38 digits


def test_zero_decimal_currency_rounds_to_whole_units():
    jpy = plan(per_unit("0.5"), currency="JPY")
    assert amounts(jpy, {"calls": "3"}) == [D("2")]  # 1.5 -> 2
    assert amounts(jpy, {"calls": "5"}) == [D("3")]  # 2.5 -> 3 (even would give 2)
    [line] = rate(jpy, {"calls": "2.4"})
    assert line.amount == D("1") and line.amount.as_tuple().exponent == 0
    kwd = plan(per_unit("0.0005"), currency="KWD")  # three minor digits
    assert amounts(kwd, {"calls": "1"}) == [D("0.001")]


def test_meter_without_quantity_still_shows_a_zero_line_and_unknown_meters_are_ignored():
    [line] = rate(plan(per_unit("2")), {"storage": "99"})
    assert (line.quantity, line.amount) == (D(0), D("0.00"))


# --- graduated -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("0", "0.00"),
        ("50", "5.00"),  # 50 x 0.10
        ("100", "10.00"),  # exactly at up_to: tier 2 (and its fee) not reached
        ("100.5", "15.04"),  # 10 + 0.5 x 0.08 + 5
        ("101", "15.08"),  # 10 + 1 x 0.08 + 5
        ("250", "27.00"),  # 100 x 0.10 + 150 x 0.08 + 5
        ("1000", "87.00"),  # 10 + 900 x 0.08 + 5
        ("1500", "112.00"),  # 10 + 72 + 5 + 500 x 0.05
    ],
)
def test_graduated_prices_each_tier_at_its_own_price(qty, expected):
    [line] = rate(plan(graduated()), {"calls": qty})
    assert line.amount == D(expected)
    assert line.unit_price is None


def test_graduated_rounds_the_line_once_not_per_tier():
    tiers = [Tier(unit_price=D("0.004"), up_to=D(1)), Tier(unit_price=D("0.004"))]
    # per tier: 0.004 -> 0.00 twice = 0.00; once: 0.008 -> 0.01
    assert amounts(plan(graduated(tiers)), {"calls": "2"}) == [D("0.01")]


@given(
    bounds=st.lists(st.integers(1, 10_000), min_size=0, max_size=5, unique=True),
    prices=st.lists(st.decimals(0, 10, places=4), min_size=6, max_size=6),
    fees=st.lists(st.decimals(0, 100, places=2), min_size=6, max_size=6),
    q1=st.decimals(0, 20_000, places=3),
    q2=st.decimals(0, 20_000, places=3),
)
def test_graduated_amount_never_decreases_as_quantity_grows(bounds, prices, fees, q1, q2):
    ups = [D(b) for b in sorted(bounds)] + [None]
    tiers = [Tier(unit_price=prices[i], up_to=up, flat_fee=fees[i]) for i, up in enumerate(ups)]
    low, high = sorted((q1, q2))
    assert graduated_amount(low, tiers) <= graduated_amount(high, tiers)
    p = plan(graduated(tiers))
    assert amounts(p, {"calls": low}) <= amounts(p, {"calls": high})


# --- volume --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("0", "0.00"),  # no units, no tier fee
        ("100", "10.00"),  # 100 x 0.10: exactly at up_to stays in tier 1
        ("101", "13.08"),  # all 101 x 0.08 + 5
        ("1000", "85.00"),  # 1000 x 0.08 + 5
        ("1001", "50.05"),  # all 1001 x 0.05: crossing into tier 3 makes it cheaper
    ],
)
def test_volume_prices_all_units_at_the_tier_the_total_falls_in(qty, expected):
    [line] = rate(plan(volume()), {"calls": qty})
    assert (line.amount, line.unit_price) == (D(expected), None)


def test_volume_with_no_units_does_not_charge_the_first_tier_fee():
    tiers = [Tier(unit_price=D(1), up_to=D(10), flat_fee=D(20)), Tier(unit_price=D("0.5"))]
    assert amounts(plan(volume(tiers)), {"calls": "0"}) == [D("0.00")]
    assert amounts(plan(volume(tiers)), {"calls": "1"}) == [D("21.00")]  # 1 x 1 + 20


# --- package -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "size", "expected"),
    [
        ("0", "100", "0.00"),
        ("1", "100", "5.00"),  # ceil(0.01) = 1 package
        ("100", "100", "5.00"),
        ("101", "100", "10.00"),  # ceil(1.01) = 2
        ("250", "100", "15.00"),  # ceil(2.5) = 3
        ("5", "2.5", "10.00"),  # exactly 2 packages
        ("5.01", "2.5", "15.00"),  # ceil(2.004) = 3
    ],
)
def test_package_charges_whole_packages_rounded_up(qty, size, expected):
    charge = PackageCharge(
        code="calls",
        description="Calls",
        item_code="API",
        meter_code="calls",
        package_size=D(size),
        package_price=D(5),
    )
    assert amounts(plan(charge), {"calls": qty}) == [D(expected)]


# --- flat ----------------------------------------------------------------------------


def flat(amount: str) -> FlatCharge:
    return FlatCharge(code="base", description="Platform fee", item_code="BASE", amount=D(amount))


def test_flat_fee_is_charged_in_full_for_a_full_period():
    [line] = rate(plan(flat("100")))
    assert (line.amount, line.kind, line.quantity, line.unit_price) == (
        D("100.00"),
        "recurring",
        D(1),
        D(100),
    )
    assert (line.period_start, line.period_end) == APRIL
    assert line.description == "Platform fee"


def test_flat_fee_is_prorated_by_active_days():
    service = (date(2024, 4, 21), date(2024, 5, 1))  # 10 of 30 days
    [line] = rate(plan(flat("100")), service=service)
    assert line.amount == D("33.33")  # 100 x 10 / 30 = 33.333...
    assert line.unit_price is None
    assert (line.period_start, line.period_end) == service
    assert "10/30" in line.description
    may = (date(2024, 5, 1), date(2024, 6, 1))  # 31 days, 1 active
    assert amounts(plan(flat("99.99")), service=(date(2024, 5, 31), may[1]), period=may) == [
        D("3.23")  # 99.99 / 31 = 3.2254...
    ]
    half = (date(2024, 4, 1), date(2024, 4, 16))  # 15 of 30 days of 0.05 = 0.025 -> 0.03
    assert amounts(plan(flat("0.05")), service=half) == [D("0.03")]
    assert amounts(plan(flat("100")), service=(date(2024, 4, 9), date(2024, 4, 9))) == [D("0.00")]


# --- minimum commitment --------------------------------------------------------------


def minimum(amount: str) -> MinimumCommitment:
    return MinimumCommitment(
        code="min", description="Minimum commitment", item_code="MIN", amount=D(amount)
    )


def test_minimum_adds_a_true_up_for_the_shortfall_of_usage():
    lines = rate(plan(per_unit("1"), minimum("50")), {"calls": "30"})
    assert [(c.charge_code, c.kind, c.amount) for c in lines] == [
        ("calls", "usage", D("30.00")),
        ("min", "minimum", D("20.00")),
    ]


def test_minimum_adds_nothing_when_usage_meets_or_exceeds_it():
    assert amounts(plan(per_unit("1"), minimum("50")), {"calls": "60"}) == [D("60.00")]
    assert amounts(plan(per_unit("1"), minimum("50")), {"calls": "50"}) == [D("50.00")]


def test_minimum_counts_usage_only_not_recurring_fees():
    lines = rate(plan(flat("100"), per_unit("1"), minimum("50")), {"calls": "10"})
    assert [(c.kind, c.amount) for c in lines] == [
        ("recurring", D("100.00")),
        ("usage", D("10.00")),
        ("minimum", D("40.00")),
    ]


def test_minimum_is_prorated_for_partial_service_and_keeps_plan_order():
    service = (date(2024, 4, 21), date(2024, 5, 1))  # 10 of 30 days: commitment 60 -> 20
    lines = rate(plan(minimum("60"), per_unit("1")), {"calls": "5"}, service=service)
    assert [(c.kind, c.amount) for c in lines] == [("minimum", D("15.00")), ("usage", D("5.00"))]
    assert amounts(plan(minimum("60"), per_unit("1")), {"calls": "21"}, service=service) == [
        D("21.00")
    ]


def test_minimum_is_measured_against_rounded_usage_lines():
    # usage 3 x 3.335 = 10.005 -> 10.01 on the invoice; commitment 10.01 is met
    assert amounts(plan(per_unit("3.335"), minimum("10.01")), {"calls": "3"}) == [D("10.01")]


# --- rejected requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "service"),
    [
        ((date(2024, 5, 1), date(2024, 4, 1)), APRIL),  # period backwards
        (APRIL, (date(2024, 3, 31), date(2024, 4, 10))),  # starts before the period
        (APRIL, (date(2024, 4, 10), date(2024, 5, 2))),  # ends after it
        (APRIL, (date(2024, 4, 10), date(2024, 4, 9))),  # backwards
    ],
)
def test_incoherent_windows_are_refused(period, service):
    with pytest.raises(BusinessRuleViolation):
        rate(plan(flat("1")), period=period, service=service)


def test_negative_or_non_finite_quantities_are_refused():
    for bad in ("-1", "NaN", "Infinity"):
        with pytest.raises(InvalidRequest):
            rate(plan(per_unit("1")), {"calls": bad})


# --- plan validation (no database needed) --------------------------------------------


@pytest.mark.parametrize(
    ("charges", "currency", "fragment"),
    [
        ([per_unit("1")], "EUX", "ISO 4217"),
        ([per_unit("-1")], "EUR", "non-negative"),
        ([per_unit("0.0000000000001")], "EUR", "12 decimal places"),
        ([graduated([Tier(unit_price=D(1), up_to=D(10))])], "EUR", "last tier"),
        ([graduated([Tier(unit_price=D(1)), Tier(unit_price=D(1))])], "EUR", "open-ended"),
        (
            [
                graduated(
                    [
                        Tier(unit_price=D(1), up_to=D(10)),
                        Tier(unit_price=D(1), up_to=D(5)),
                        Tier(unit_price=D(1)),
                    ]
                )
            ],
            "EUR",
            "greater than",
        ),
        ([graduated([])], "EUR", "at least one tier"),
        (
            [
                PackageCharge(
                    code="p",
                    description="P",
                    item_code="I",
                    meter_code="calls",
                    package_size=D(0),
                    package_price=D(1),
                )
            ],
            "EUR",
            "positive",
        ),
        ([per_unit("1"), per_unit("2")], "EUR", "unique"),
        (
            [
                minimum("1"),
                MinimumCommitment(code="m2", description="M", item_code="I", amount=D(2)),
            ],
            "EUR",
            "at most one minimum",
        ),
        ([], "EUR", "at least one charge"),
    ],
)
def test_invalid_plans_are_refused_with_a_clear_detail(charges, currency, fragment):
    # Rules across fields, which no schema states, are business rules (422), not 400.
    rules = {"last tier", "open-ended", "greater than", "unique", "at most one minimum"}
    expected = BusinessRuleViolation if fragment in rules else InvalidRequest
    with pytest.raises(expected) as caught:
        check_plan(plan(*charges, currency=currency))
    assert fragment in caught.value.detail


def test_a_valid_plan_passes_validation():
    check_plan(plan(graduated(), flat("10"), minimum("5"), per_unit("0.000000000001", code="x")))
