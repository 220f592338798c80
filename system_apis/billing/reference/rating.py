"""The rating function: a price plan and a period's aggregated quantities -> rated charges.

Pure and synchronous, so it can be tested exhaustively without a database. Each line
is computed exactly (in a wide decimal context, so 18-digit quantities times 12-dp
prices never lose digits) and rounded once to the currency's minor unit, HALF_UP.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_CEILING, Decimal

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.model import (
    Charge,
    FlatCharge,
    GraduatedCharge,
    MinimumCommitment,
    PackageCharge,
    PerUnitCharge,
    PricePlan,
    RatedCharge,
    Tier,
    VolumeCharge,
)
from canonical.money import ZERO, round_money

__all__ = ["graduated_amount", "package_amount", "rate_plan", "volume_amount"]

_PRECISION = 120  # digits; far above any product of two wire decimals


def graduated_amount(quantity: Decimal, tiers: list[Tier]) -> Decimal:
    """Each tier's units at that tier's price, plus its flat fee when any unit falls in it."""
    amount, floor = ZERO, ZERO
    for tier in tiers:
        if quantity <= floor:
            break
        ceiling = quantity if tier.up_to is None else min(quantity, tier.up_to)
        amount += (ceiling - floor) * tier.unit_price + tier.flat_fee
        if tier.up_to is None:
            break
        floor = tier.up_to
    return amount


def volume_amount(quantity: Decimal, tiers: list[Tier]) -> Decimal:
    """All units at the price of the tier the total falls in, plus that tier's flat fee.

    No units, no charge: a zero quantity does not pull in the first tier's flat fee."""
    if quantity == 0:
        return ZERO
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return quantity * tier.unit_price + tier.flat_fee
    raise InvalidRequest("the last tier must be open-ended")  # put_plan prevents this


def package_amount(quantity: Decimal, size: Decimal, price: Decimal) -> Decimal:
    packages = (quantity / size).to_integral_value(rounding=ROUND_CEILING)
    return packages * price


def _usage_amount(charge: Charge, quantity: Decimal) -> tuple[Decimal, Decimal | None]:
    """(exact amount, unit price or None where no single unit price applies)."""
    match charge:
        case PerUnitCharge():
            return quantity * charge.unit_price, charge.unit_price
        case GraduatedCharge():
            return graduated_amount(quantity, charge.tiers), None
        case VolumeCharge():
            return volume_amount(quantity, charge.tiers), None
        case PackageCharge():
            return package_amount(quantity, charge.package_size, charge.package_price), None
    raise TypeError(f"not a usage charge: {type(charge).__name__}")


def check_window(
    period_start: date, period_end: date, service_start: date, service_end: date
) -> None:
    if period_start >= period_end:
        raise BusinessRuleViolation("period_start must be before period_end")
    if not period_start <= service_start <= service_end <= period_end:
        raise BusinessRuleViolation(
            "the service window must lie within the period: "
            "period_start <= service_start <= service_end <= period_end"
        )


def rate_plan(
    plan: PricePlan,
    *,
    period_start: date,
    period_end: date,
    service_start: date,
    service_end: date,
    quantities: Mapping[str, Decimal],
) -> list[RatedCharge]:
    """One line per usage and flat charge (in plan order), plus a minimum true-up line
    where the usage lines fall short of the (prorated) commitment."""
    check_window(period_start, period_end, service_start, service_end)
    for code, quantity in quantities.items():
        if not quantity.is_finite() or quantity < 0:
            raise InvalidRequest(f"quantity of meter {code!r} must be a non-negative number")
    period_days = (period_end - period_start).days
    service_days = (service_end - service_start).days
    currency = plan.currency

    def prorate(amount: Decimal) -> Decimal:
        if service_days == period_days:
            return amount
        return amount * service_days / period_days  # multiply first: exact up to the division

    def line(
        charge: Charge,
        kind,
        amount: Decimal,
        *,
        quantity: Decimal,
        unit_price: Decimal | None,
        meter_code: str | None = None,
        note: str = "",
    ) -> RatedCharge:
        return RatedCharge(
            charge_code=charge.code,
            kind=kind,
            description=charge.description + note,
            item_code=charge.item_code,
            meter_code=meter_code,
            quantity=quantity,
            unit_price=unit_price,
            amount=round_money(amount, currency),
            currency=currency,
            period_start=service_start,
            period_end=service_end,
        )

    with decimal.localcontext() as ctx:
        ctx.prec = _PRECISION
        lines: dict[int, RatedCharge] = {}
        for index, charge in enumerate(plan.charges):
            if isinstance(charge, FlatCharge):
                partial = service_days != period_days
                lines[index] = line(
                    charge,
                    "recurring",
                    prorate(charge.amount),
                    quantity=Decimal(1),
                    unit_price=None if partial else charge.amount,
                    note=f" (prorated {service_days}/{period_days} days)" if partial else "",
                )
            elif not isinstance(charge, MinimumCommitment):
                quantity = quantities.get(charge.meter_code, ZERO)
                amount, unit_price = _usage_amount(charge, quantity)
                lines[index] = line(
                    charge,
                    "usage",
                    amount,
                    quantity=quantity,
                    unit_price=unit_price,
                    meter_code=charge.meter_code,
                )
        # Invoices sum rounded lines, so the commitment is measured against those.
        usage = sum((c.amount for c in lines.values() if c.kind == "usage"), ZERO)
        for index, charge in enumerate(plan.charges):
            if isinstance(charge, MinimumCommitment):
                shortfall = round_money(prorate(charge.amount) - usage, currency)
                if shortfall > 0:
                    lines[index] = line(
                        charge, "minimum", shortfall, quantity=Decimal(1), unit_price=shortfall
                    )
    return [lines[index] for index in sorted(lines)]
