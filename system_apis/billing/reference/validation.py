"""What the reference billing engine refuses to store, with a detail a finance user can act
on: ``InvalidRequest`` (400) for what the wire contract states, ``BusinessRuleViolation``
(422) for rules across fields that no schema states (tier order, unique charge codes, one
minimum commitment), so that a contract-valid body is never answered 400.

Callers in-process hand over canonical Structs that no schema has checked, so the same
limits the wire contract states (``MeterSpec``/``PlanSpec``) are enforced here too.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.model import (
    Code,
    GraduatedCharge,
    Meter,
    MinimumCommitment,
    PackageCharge,
    PerUnitCharge,
    PricePlan,
    Tier,
    VolumeCharge,
)
from canonical.money import UNIT_PRICE_PLACES, is_currency
from system_apis.billing.port import MeterSpec, PlanSpec, spec_body

__all__ = ["check_code", "check_meter", "check_plan", "usage_meter_codes"]


def check_code(code: str, what: str) -> None:
    try:
        msgspec.convert(code, Code)
    except msgspec.ValidationError:
        raise InvalidRequest(
            f"{what} {code!r} is not a valid code (lowercase letters, digits, '_', '.', '-'; "
            "at most 64 characters)"
        ) from None


def _conforms(value: object, spec: type, what: str) -> None:
    """The catch-all: ``value`` must be expressible in the wire contract."""
    try:
        msgspec.convert(value, spec)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"{what} does not match the contract: {exc}") from None


def check_meter(meter: Meter) -> None:
    check_code(meter.code, "meter code")
    if len(meter.id) > 64:
        raise InvalidRequest("meter id must be at most 64 characters")
    if meter.aggregation != "count" and not meter.field:
        raise InvalidRequest(
            f"meter {meter.code!r}: aggregation {meter.aggregation!r} needs the event "
            "property to aggregate in `field`"
        )
    _conforms(spec_body(meter), MeterSpec, f"meter {meter.code!r}")


def _amount(value: Decimal, where: str, *, positive: bool = False) -> None:
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise InvalidRequest(f"{where} must be {'positive' if positive else 'non-negative'}")
    # Trailing zeros carry nothing, so the places are counted on the normalized value.
    if value.normalize().as_tuple().exponent < -UNIT_PRICE_PLACES:  # type: ignore[operator]
        raise InvalidRequest(f"{where} has more than {UNIT_PRICE_PLACES} decimal places")


def _tiers(tiers: list[Tier], where: str) -> None:
    if not tiers:
        raise InvalidRequest(f"{where}: at least one tier is required")
    previous = Decimal(0)
    for i, tier in enumerate(tiers):
        at = f"{where}.tiers[{i}]"
        _amount(tier.unit_price, f"{at}.unit_price")
        _amount(tier.flat_fee, f"{at}.flat_fee")
        last = i == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise BusinessRuleViolation(
                    f"{at}: only the last tier may be open-ended (up_to null)"
                )
            continue
        if last:
            raise BusinessRuleViolation(f"{where}: the last tier must be open-ended (up_to null)")
        _amount(tier.up_to, f"{at}.up_to", positive=True)
        if tier.up_to <= previous:
            raise BusinessRuleViolation(
                f"{at}: up_to must be greater than the previous tier's up_to"
            )
        previous = tier.up_to


def check_plan(plan: PricePlan) -> None:
    """Everything about a plan that needs no database; meter references are checked by
    the engine against its meters."""
    check_code(plan.code, "plan code")
    if len(plan.id) > 64:
        raise InvalidRequest("plan id must be at most 64 characters")
    if not is_currency(plan.currency):
        raise InvalidRequest(f"currency {plan.currency!r} is not an ISO 4217 code")
    if not plan.charges:
        raise InvalidRequest("a plan needs at least one charge")
    seen: set[str] = set()
    for i, charge in enumerate(plan.charges):
        where = f"charges[{i}] ({charge.code})"
        if charge.code in seen:
            raise BusinessRuleViolation(f"{where}: charge codes must be unique within a plan")
        seen.add(charge.code)
        match charge:
            case PerUnitCharge():
                _amount(charge.unit_price, f"{where}.unit_price")
            case GraduatedCharge() | VolumeCharge():
                _tiers(charge.tiers, where)
            case PackageCharge():
                _amount(charge.package_size, f"{where}.package_size", positive=True)
                _amount(charge.package_price, f"{where}.package_price")
            case _:  # flat and minimum
                _amount(charge.amount, f"{where}.amount")
    if sum(isinstance(c, MinimumCommitment) for c in plan.charges) > 1:
        raise BusinessRuleViolation("a plan may have at most one minimum commitment")
    _conforms(spec_body(plan), PlanSpec, f"plan {plan.code!r}")


def usage_meter_codes(plan: PricePlan) -> set[str]:
    return {c.meter_code for c in plan.charges if hasattr(c, "meter_code")}
