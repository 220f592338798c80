"""Money: Decimal amounts with an ISO 4217 currency, rounded to the minor unit HALF_UP.

Unit prices may carry up to 12 decimal places; line and tax amounts are rounded to the
currency's minor unit, and document totals are sums of rounded lines so they tie out.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import msgspec
from babel.numbers import UnknownCurrencyError, get_currency_precision, validate_currency

__all__ = ["ZERO", "Money", "is_currency", "minor_unit", "round_money", "total"]

ZERO = Decimal("0")
UNIT_PRICE_PLACES = 12


@lru_cache(maxsize=256)
def is_currency(code: str) -> bool:
    try:
        validate_currency(code)
    except UnknownCurrencyError:
        return False
    return code.isupper() and len(code) == 3


@lru_cache(maxsize=256)
def minor_unit(currency: str) -> Decimal:
    """``Decimal('0.01')`` for EUR, ``Decimal('1')`` for JPY, ``Decimal('0.001')`` for KWD."""
    return Decimal(1).scaleb(-get_currency_precision(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def total(amounts: Iterable[Decimal], currency: str) -> Decimal:
    return round_money(sum(amounts, ZERO), currency)


class Money(msgspec.Struct, frozen=True):
    amount: Decimal
    currency: str

    def rounded(self) -> Money:
        return Money(round_money(self.amount, self.currency), self.currency)
