"""Which tax applies to a sale, decided in this order:

1. exempt customer                                   -> 0 %, ``exempt``
2. US seller, US customer                            -> customer's state rate, ``us_state``
3. seller and customer in the same country           -> that country's standard rate, ``domestic``
4. EU seller, customer in another member state with a VAT number of that state valid
   per python-stdnum (format and checksum; no VIES call) -> 0 %, ``reverse_charge``
5. EU seller, customer in another member state otherwise (B2C)
                                                     -> customer state's rate, ``oss``
6. anything else cross-border                        -> 0 %, ``export``

Pure: no I/O, so every rule is unit-tested directly.
"""

from __future__ import annotations

import decimal
import re
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.model import TaxLine
from canonical.money import ZERO, is_currency, round_money
from system_apis.tax.port import TaxRequest, VatCheck
from system_apis.tax.reference.rates import EU_MEMBER_STATES, US_STATE_RATES, standard_rate

__all__ = ["REVERSE_CHARGE_NOTE", "Decision", "check_vat", "decide", "tax_lines"]

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Art. 196 Directive 2006/112/EC). Customer VAT ID {vat_id}"
)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# VAT prefixes that are not the country's ISO code. EU... numbers are OSS registrations
# of non-EU sellers and belong to no member state.
_VAT_PREFIX_COUNTRY = {"EL": "GR", "XI": "GB", "EU": None}
_COUNTRY_VAT_PREFIX = {"GR": "EL"}


def check_vat(vat_id: str) -> VatCheck:
    try:
        normalized = eu_vat.validate(vat_id)
    except (ValidationError, ValueError, IndexError):
        return VatCheck(vat_id=vat_id, valid=False, country=None, normalized=None)
    prefix = normalized[:2]
    country = _VAT_PREFIX_COUNTRY.get(prefix, prefix)
    return VatCheck(vat_id=vat_id, valid=True, country=country, normalized=normalized)


def _customer_vat(tax_id: str | None, country: str) -> VatCheck | None:
    """The customer's VAT number, read with its country prefix added when it lacks one."""
    if not tax_id:
        return None
    check = check_vat(tax_id)
    if not check.valid and not tax_id[:2].isalpha():
        check = check_vat(_COUNTRY_VAT_PREFIX.get(country, country) + tax_id)
    return check


class Decision(NamedTuple):
    rate: Decimal
    jurisdiction: str
    kind: str
    note: str | None = None


def decide(request: TaxRequest, day: date) -> Decision:
    """The rule that applies to every line of ``request`` (lines differ only in amount:
    items are all taxed as standard-rated services)."""
    seller, customer = request.seller_country, request.customer_country
    for name, value in (("seller_country", seller), ("customer_country", customer)):
        if not _COUNTRY.match(value):
            raise InvalidRequest(f"{name} must be an ISO 3166-1 alpha-2 code, got {value!r}")
    if request.customer_tax_status == "exempt":
        return Decision(ZERO, customer, "exempt", "Customer is exempt from tax")
    if seller == "US" and customer == "US":
        state = request.customer_us_state
        if state is None:
            raise BusinessRuleViolation("a sale to a US customer needs customer_us_state")
        if state not in US_STATE_RATES:
            raise BusinessRuleViolation(f"{state!r} is not a US state (USPS code) or DC")
        note = None if US_STATE_RATES[state] else f"{state} levies no state sales tax"
        return Decision(US_STATE_RATES[state], f"US-{state}", "us_state", note)
    if seller == customer:
        rate = standard_rate(seller, day)
        if rate is None:
            raise BusinessRuleViolation(f"the tax engine has no domestic rate for {seller}")
        return Decision(rate, seller, "domestic")
    if seller in EU_MEMBER_STATES and customer in EU_MEMBER_STATES:
        vat = _customer_vat(request.customer_tax_id, customer)
        if vat is not None and vat.valid and vat.country == customer:
            note = REVERSE_CHARGE_NOTE.format(vat_id=vat.normalized)
            return Decision(ZERO, customer, "reverse_charge", note)
        rate = standard_rate(customer, day)
        assert rate is not None  # every member state is tabled
        return Decision(
            rate,
            customer,
            "oss",
            f"EU distance sale to a non-taxable person: {customer} VAT via OSS",
        )
    return Decision(
        ZERO,
        customer,
        "export",
        f"Cross-border supply from {seller} to {customer}: no {seller} tax charged",
    )


def tax_lines(request: TaxRequest, today: date) -> list[TaxLine]:
    """One ``TaxLine`` per request line, same order; amount = round(amount x rate)."""
    if not is_currency(request.currency):
        raise InvalidRequest(f"currency {request.currency!r} is not an ISO 4217 code")
    for i, line in enumerate(request.lines):
        if not line.amount.is_finite():
            raise InvalidRequest(f"lines[{i}].amount must be a finite number")
    decision = decide(request, request.tax_date or today)
    with decimal.localcontext() as ctx:
        ctx.prec = 120  # exact products of any two wire decimals before the one rounding
        amounts = [
            round_money(line.amount * decision.rate, request.currency) for line in request.lines
        ]
    return [
        TaxLine(
            rate=decision.rate,
            amount=abs(amount) if amount == 0 else amount,  # no "-0.00" on credit lines
            jurisdiction=decision.jurisdiction,
            kind=decision.kind,  # type: ignore[arg-type]
            note=decision.note,
        )
        for amount in amounts
    ]
