"""Rate tables of the reference tax engine (a stand-in, not tax advice).

Standard VAT/GST rates are effective-dated, as published by the EU Commission ("VAT
rates applied in the Member States") and the national authorities; each entry applies
from its date until the next one. History is only kept back to 2023: earlier tax dates
use the oldest entry. Reduced rates and product-specific taxability are out of scope:
every item is treated as a standard-rated electronically supplied service.

US rates are simplified to the state-level base rate (2025) of the customer's state:
no county/city/district taxes, no nexus test (the seller is assumed to collect in every
state), and no product taxability (many states do not tax SaaS at all). 0 for the
states without a state sales tax (AK, DE, MT, NH, OR).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

__all__ = ["EU_MEMBER_STATES", "STANDARD_RATES", "US_STATE_RATES", "standard_rate"]

_ALWAYS = date.min


def _pct(text: str) -> Decimal:
    return Decimal(text) / 100


def _fixed(percent: str) -> tuple[tuple[date, Decimal], ...]:
    return ((_ALWAYS, _pct(percent)),)


EU_MEMBER_STATES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
    "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})  # fmt: skip

# country -> ((effective from, rate), ...) in date order
STANDARD_RATES: dict[str, tuple[tuple[date, Decimal], ...]] = {
    # EU member states
    "AT": _fixed("20"),
    "BE": _fixed("21"),
    "BG": _fixed("20"),
    "CY": _fixed("19"),
    "CZ": _fixed("21"),
    "DE": _fixed("19"),
    "DK": _fixed("25"),
    "EE": ((_ALWAYS, _pct("20")), (date(2024, 1, 1), _pct("22")), (date(2025, 7, 1), _pct("24"))),
    "ES": _fixed("21"),
    "FI": ((_ALWAYS, _pct("24")), (date(2024, 9, 1), _pct("25.5"))),
    "FR": _fixed("20"),
    "GR": _fixed("24"),
    "HR": _fixed("25"),
    "HU": _fixed("27"),
    "IE": _fixed("23"),
    "IT": _fixed("22"),
    "LT": _fixed("21"),
    "LU": ((_ALWAYS, _pct("17")), (date(2023, 1, 1), _pct("16")), (date(2024, 1, 1), _pct("17"))),
    "LV": _fixed("21"),
    "MT": _fixed("18"),
    "NL": _fixed("21"),
    "PL": _fixed("23"),
    "PT": _fixed("23"),
    "RO": ((_ALWAYS, _pct("19")), (date(2025, 8, 1), _pct("21"))),
    "SE": _fixed("25"),
    "SI": _fixed("22"),
    "SK": ((_ALWAYS, _pct("20")), (date(2025, 1, 1), _pct("23"))),
    # Europe outside the EU
    "GB": _fixed("20"),
    "CH": ((_ALWAYS, _pct("7.7")), (date(2024, 1, 1), _pct("8.1"))),
    "LI": ((_ALWAYS, _pct("7.7")), (date(2024, 1, 1), _pct("8.1"))),  # Swiss VAT area
    "NO": _fixed("25"),
    "IS": _fixed("24"),
    # Elsewhere (GST)
    "AU": _fixed("10"),
    "CA": _fixed("5"),  # federal GST only; provincial HST/PST not modelled
    "IN": _fixed("18"),
    "JP": _fixed("10"),
    "NZ": _fixed("15"),
    "SG": ((_ALWAYS, _pct("8")), (date(2024, 1, 1), _pct("9"))),
}


def standard_rate(country: str, day: date) -> Decimal | None:
    """The standard rate in force in ``country`` on ``day``; None when not tabled."""
    history = STANDARD_RATES.get(country)
    if history is None:
        return None
    rate = history[0][1]
    for since, value in history:
        if since <= day:
            rate = value
    return rate


US_STATE_RATES: dict[str, Decimal] = {
    state: _pct(percent)
    for state, percent in {
        "AL": "4", "AK": "0", "AZ": "5.6", "AR": "6.5", "CA": "7.25", "CO": "2.9",
        "CT": "6.35", "DE": "0", "DC": "6", "FL": "6", "GA": "4", "HI": "4", "ID": "6",
        "IL": "6.25", "IN": "7", "IA": "6", "KS": "6.5", "KY": "6", "LA": "5", "ME": "5.5",
        "MD": "6", "MA": "6.25", "MI": "6", "MN": "6.875", "MS": "7", "MO": "4.225",
        "MT": "0", "NE": "5.5", "NV": "6.85", "NH": "0", "NJ": "6.625", "NM": "4.875",
        "NY": "4", "NC": "4.75", "ND": "5", "OH": "5.75", "OK": "4.5", "OR": "0", "PA": "6",
        "RI": "7", "SC": "6", "SD": "4.2", "TN": "7", "TX": "6.25", "UT": "6.1", "VT": "6",
        "VA": "5.3", "WA": "6.5", "WV": "6", "WI": "5", "WY": "4",
    }.items()
}  # fmt: skip
