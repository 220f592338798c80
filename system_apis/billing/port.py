"""The billing engine's port and its system contract.

``BillingPort`` is what the process layer depends on; ``ReferenceBilling`` (built in) and
``HttpBilling`` (a remote engine) implement it. The ``*Spec`` Structs are the wire shapes
of request bodies: decimals travel as strings whose shape the schema states exactly, and
``to_*`` turns them into the canonical Structs the port speaks.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

import msgspec
from babel.numbers import list_currencies

from canonical.model import (
    Base,
    Code,
    Meter,
    NonNegativeDecimalString,
    Page,
    PositiveDecimalString,
    PricePlan,
    RatedCharge,
    decimal_text,
)

__all__ = [
    "MAX_EVENT_TYPE_FILTER",
    "BillingPort",
    "ChargeSpec",
    "CountMeterSpec",
    "FlatChargeSpec",
    "GraduatedChargeSpec",
    "IsoCurrency",
    "LatestMeterSpec",
    "MaxMeterSpec",
    "MeterList",
    "MeterSpec",
    "MinimumCommitmentSpec",
    "PackageChargeSpec",
    "PerUnitChargeSpec",
    "PlanList",
    "PlanSpec",
    "RatedChargeList",
    "RatingRequest",
    "RatingSpec",
    "SumMeterSpec",
    "TierSpec",
    "UniqueCountMeterSpec",
    "VolumeChargeSpec",
    "fits",
    "spec_body",
    "to_wire",
]

# --- wire vocabulary -----------------------------------------------------------------

# Every code ``canonical.money.is_currency`` accepts, as an enum, so the schema (not a
# handler) rejects unknown currencies.
IsoCurrency = Literal[tuple(sorted(list_currencies()))]  # type: ignore[valid-type]
# Printable text: no control characters (PostgreSQL refuses NUL), bounded by the columns.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Description = Annotated[
    str, msgspec.Meta(min_length=1, max_length=400, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ItemCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
EventType = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")]
FieldPath = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")]
Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]
# A plan is addressed by its id or its code; both are plain tokens.
PlanRef = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Event types one ``GET /meters`` may filter by (the route's limit; adapters chunk by it).
MAX_EVENT_TYPE_FILTER = 50


def fits(value: str, kind: Any) -> bool:
    """Whether ``value`` has a shape the contract can address (``kind`` is one of the
    constrained types above); anything else cannot exist on any engine, and must not
    reach a database (PostgreSQL refuses NUL in text) or a path."""
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def to_wire(value: Any) -> Any:
    """JSON builtins of a Struct (or list/dict of them) with decimals as ``decimal_text``."""

    def walk(item: Any) -> Any:
        if isinstance(item, Decimal):
            return decimal_text(item)
        if isinstance(item, dict):
            return {key: walk(val) for key, val in item.items()}
        if isinstance(item, list):
            return [walk(val) for val in item]
        return item

    return walk(msgspec.to_builtins(value, builtin_types=(Decimal,)))


def spec_body(value: Meter | PricePlan) -> dict[str, Any]:
    """The wire body of ``PUT /meters/{code}`` or ``PUT /plans/{plan}`` for ``value``: the
    path carries the code and the engine assigns the id."""
    body = to_wire(value)
    del body["id"], body["code"]
    return body


# --- port-level structs --------------------------------------------------------------


class RatingRequest(Base):
    """Rate one subscription for one period. ``plan_id`` is the plan's id or its code."""

    plan_id: str
    period_start: date  # the calendar month, end exclusive
    period_end: date
    service_start: date  # the part of the period the subscription was active, end exclusive
    service_end: date
    quantities: dict[str, Decimal] = {}  # meter_code -> aggregated quantity


class MeterList(Page, kw_only=True):
    data: list[Meter]


class PlanList(Page, kw_only=True):
    data: list[PricePlan]


class RatedChargeList(Page, kw_only=True):
    data: list[RatedCharge]


# --- request bodies ------------------------------------------------------------------


class _MeterSpec(Base, tag_field="aggregation", kw_only=True):
    """Body of ``PUT /meters/{code}``, one variant per aggregation, so the schema says
    which need ``field``. The engine assigns the id (kept on replace)."""

    name: Name
    event_type: EventType
    unit: Unit = "unit"

    def to_meter(self, *, id: str, code: str) -> Meter:
        return Meter(
            id=id, code=code, aggregation=self.__struct_config__.tag, **msgspec.structs.asdict(self)
        )


class CountMeterSpec(_MeterSpec, tag="count"):
    field: FieldPath | None = None  # count events; ``field`` is informational


class SumMeterSpec(_MeterSpec, tag="sum"):
    field: FieldPath  # the event property summed


class MaxMeterSpec(_MeterSpec, tag="max"):
    field: FieldPath


class UniqueCountMeterSpec(_MeterSpec, tag="unique_count"):
    field: FieldPath  # distinct values of this property are counted


class LatestMeterSpec(_MeterSpec, tag="latest"):
    field: FieldPath


MeterSpec = CountMeterSpec | SumMeterSpec | MaxMeterSpec | UniqueCountMeterSpec | LatestMeterSpec


class TierSpec(Base, kw_only=True):
    unit_price: NonNegativeDecimalString
    up_to: PositiveDecimalString | None = None  # inclusive; None only on the last tier
    flat_fee: NonNegativeDecimalString = "0"


class _ChargeSpec(Base, tag_field="model", kw_only=True):
    code: Code
    description: Description
    item_code: ItemCode


Tiers = Annotated[
    list[TierSpec],
    msgspec.Meta(
        min_length=1,
        max_length=50,
        description=(
            "Ascending by up_to (inclusive); every tier but the last has up_to, the last has "
            "none (open-ended)."
        ),
    ),
]


class PerUnitChargeSpec(_ChargeSpec, tag="per_unit"):
    meter_code: Code
    unit_price: NonNegativeDecimalString


class GraduatedChargeSpec(_ChargeSpec, tag="graduated"):
    meter_code: Code
    tiers: Tiers


class VolumeChargeSpec(_ChargeSpec, tag="volume"):
    meter_code: Code
    tiers: Tiers


class PackageChargeSpec(_ChargeSpec, tag="package"):
    meter_code: Code
    package_size: PositiveDecimalString
    package_price: NonNegativeDecimalString


class FlatChargeSpec(_ChargeSpec, tag="flat"):
    amount: NonNegativeDecimalString


class MinimumCommitmentSpec(_ChargeSpec, tag="minimum"):
    amount: NonNegativeDecimalString


ChargeSpec = (
    PerUnitChargeSpec
    | GraduatedChargeSpec
    | VolumeChargeSpec
    | PackageChargeSpec
    | FlatChargeSpec
    | MinimumCommitmentSpec
)


class PlanSpec(Base, kw_only=True):
    """Body of ``PUT /plans/{plan}`` (the code); the engine assigns the id (kept on
    replace). Meter codes must name existing meters."""

    name: Name
    currency: IsoCurrency
    charges: Annotated[list[ChargeSpec], msgspec.Meta(min_length=1, max_length=100)]

    def to_plan(self, *, id: str, code: str) -> PricePlan:
        # The spec has the canonical field names; convert parses the decimal strings.
        return msgspec.convert({**msgspec.to_builtins(self), "id": id, "code": code}, PricePlan)


# Litestar does not carry constraints of a dict's value type into the schema, so the
# value schema is stated for it ("extra" is Litestar's hook into the field's schema).
Quantities = Annotated[
    dict[str, NonNegativeDecimalString],
    msgspec.Meta(
        description="meter_code -> the period's aggregated quantity (missing meters rate as 0)",
        extra_json_schema={
            "extra": {
                "additional_properties": {
                    "type": "string",
                    "pattern": NonNegativeDecimalString.__metadata__[0].pattern,
                }
            }
        },
    ),
]


class RatingSpec(Base, kw_only=True):
    """Body of ``POST /rate``."""

    plan_id: PlanRef
    period_start: date
    period_end: date
    service_start: date
    service_end: date
    quantities: Quantities = {}

    def to_request(self) -> RatingRequest:
        return msgspec.convert(msgspec.to_builtins(self), RatingRequest)


# --- the port ------------------------------------------------------------------------


class BillingPort(Protocol):
    """Meters, price plans and the rating function of the billing engine.

    Errors: ``NotFound`` for unknown meters/plans, including a plan that refers to meters
    that do not exist; ``InvalidRequest`` for a meter or plan that cannot be stored as
    given (currency, prices, ...); ``BusinessRuleViolation`` for a plan breaking a rule
    across fields (tier order, unique charge codes, one minimum commitment) and for a
    rating request whose dates do not fit together."""

    async def put_meter(self, meter: Meter) -> Meter:
        """Create or replace, keyed by ``meter.code``; an existing meter keeps its id."""
        ...

    async def get_meter(self, code: str) -> Meter: ...

    async def list_meters(self) -> list[Meter]: ...

    async def meters_page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> MeterList:
        """One page ordered by id; ``event_types`` filters when given."""
        ...

    async def meters_for_event_types(self, event_types: Collection[str]) -> dict[str, list[Meter]]:
        """Meters per event type; event types without meters are absent from the result."""
        ...

    async def put_plan(self, plan: PricePlan) -> PricePlan:
        """Create or replace, keyed by ``plan.code``; an existing plan keeps its id."""
        ...

    async def get_plan(self, plan_id: str) -> PricePlan:
        """By id, else by code."""
        ...

    async def list_plans(self) -> list[PricePlan]: ...

    async def plans_page(self, *, limit: int, starting_after: str | None = None) -> PlanList: ...

    async def rate(self, request: RatingRequest) -> list[RatedCharge]: ...
