"""The tax engine's port and its system contract.

``TaxPort`` is what the process layer depends on; ``ReferenceTax`` (built in) and
``HttpTax`` (a remote engine) implement it. ``TaxQuoteSpec`` is the wire shape of a quote
request: amounts travel as decimal strings whose shape the schema states exactly.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

import msgspec
from babel.numbers import list_currencies

from canonical.model import (
    Base,
    Country,
    DecimalString,
    Page,
    TaxLine,
    TaxStatus,
    decimal_text,
)

__all__ = [
    "TaxLineList",
    "TaxPort",
    "TaxQuoteSpec",
    "TaxRequest",
    "TaxableLine",
    "TaxableLineSpec",
    "UsState",
    "VatCheck",
    "VatNumber",
    "to_wire",
]

# Every code ``canonical.money.is_currency`` accepts, as an enum.
IsoCurrency = Literal[tuple(sorted(list_currencies()))]  # type: ignore[valid-type]
# The 50 states and DC, as USPS codes.
UsState = Literal[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL",
    "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE",
    "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD",
    "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
]  # fmt: skip
# Separators as people write them ("DE 136.695.976"); stdnum strips them.
TaxId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,39}$")]
# The path form of a VAT number: no spaces or slashes, no leading dot.
VatNumber = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,39}$")]
Reference = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ItemCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]

# --- port-level structs --------------------------------------------------------------


class TaxableLine(Base):
    reference: str  # the caller's line reference, echoed by position in the answer
    item_code: str
    amount: Decimal  # net, rounded; negative on credit memos


class TaxRequest(Base, kw_only=True):
    seller_country: str
    seller_us_state: str | None = None
    customer_country: str
    customer_tax_status: TaxStatus = "taxable"
    customer_tax_id: str | None = None
    customer_us_state: str | None = None
    currency: str
    lines: list[TaxableLine]
    tax_date: date | None = None  # the tax point; rates in force that day (None: today)


class VatCheck(Base):
    vat_id: str  # as given
    valid: bool  # checksum and format only; no VIES lookup
    country: str | None  # ISO 3166 country of the number (GR for EL, GB for XI)
    normalized: str | None  # compact form, e.g. DE136695976; None when invalid


class TaxLineList(Page, kw_only=True):
    data: list[TaxLine]


# --- request bodies ------------------------------------------------------------------


class TaxableLineSpec(Base, kw_only=True):
    reference: Reference
    item_code: ItemCode
    amount: DecimalString


class TaxQuoteSpec(Base, kw_only=True):
    """Body of ``POST /quotes``."""

    seller_country: Country
    seller_us_state: UsState | None = None
    customer_country: Country
    customer_tax_status: TaxStatus = "taxable"
    customer_tax_id: TaxId | None = None
    customer_us_state: UsState | None = None
    currency: IsoCurrency
    lines: Annotated[list[TaxableLineSpec], msgspec.Meta(min_length=1, max_length=1000)]
    tax_date: date | None = None

    def to_request(self) -> TaxRequest:
        return msgspec.convert(msgspec.to_builtins(self), TaxRequest)


def to_wire(request: TaxRequest) -> dict[str, Any]:
    """The JSON body of a request: decimals fixed-point, never exponent notation."""
    body = msgspec.to_builtins(request, builtin_types=(Decimal,))
    for line in body["lines"]:
        line["amount"] = decimal_text(line["amount"])
    return body


# --- the port ------------------------------------------------------------------------


class TaxPort(Protocol):
    """Errors: ``InvalidRequest`` for a request that cannot be read (unknown currency,
    malformed amounts); ``BusinessRuleViolation`` when no rule gives a rate (a domestic
    sale in a country without a rate, a US sale without a state)."""

    async def quote(self, request: TaxRequest) -> list[TaxLine]:
        """One ``TaxLine`` per input line, in the same order; the quote is logged."""
        ...

    async def validate_vat(self, vat_id: str) -> VatCheck: ...
