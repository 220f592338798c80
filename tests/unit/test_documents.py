"""How the Experience APIs print a document's tax rates: as the percentage a reader
expects, in plain notation."""

from __future__ import annotations

import re
from decimal import Decimal

from experience_apis.documents import percent
from system_apis.tax.reference.rates import STANDARD_RATES, US_STATE_RATES

D = Decimal
PLAIN = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")  # no exponent, no trailing zero


def test_rates_print_as_plain_percentages():
    cases = {"0.20": "20", "0.2": "20", "0.19": "19", "0.055": "5.5", "0": "0", "0.00": "0"}
    assert {rate: str(percent(D(rate))) for rate in cases} == cases
    assert str(percent(D("1"))) == "100"


def test_every_tabled_rate_prints_plain_and_exact():
    rates = {rate for history in STANDARD_RATES.values() for _, rate in history}
    rates |= set(US_STATE_RATES.values())
    for rate in rates:
        printed = str(percent(rate))
        assert PLAIN.match(printed), (rate, printed)
        assert D(printed) == rate * 100
