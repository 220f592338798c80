"""Aggregation of stored usage events into one quantity per meter and service window.

Semantics per meter aggregation: ``sum`` / ``max`` of a numeric property, ``count`` of
events, ``unique_count`` of distinct property values, ``latest`` value by event time.
Events whose property is missing or not numeric do not contribute to sum/max/latest.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.model import Meter
from canonical.money import ZERO
from process_apis.tables import usage_events

__all__ = ["MeterQuantity", "aggregate", "window_filter"]


class MeterQuantity(msgspec.Struct, frozen=True):
    meter_code: str
    event_type: str
    quantity: Decimal
    event_count: int


def _number(value) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def window_filter(customer_id: str, event_type: str, start: datetime, end: datetime):
    """The events behind a line: the customer's events of a type in [start, end)."""
    return sa.and_(
        usage_events.c.customer_id == customer_id,
        usage_events.c.event_type == event_type,
        usage_events.c.timestamp >= start,
        usage_events.c.timestamp < end,
    )


async def aggregate(
    session: AsyncSession,
    customer_id: str,
    meters: list[Meter],
    start: datetime,
    end: datetime,
) -> dict[str, MeterQuantity]:
    by_type: dict[str, list[Meter]] = {}
    for meter in meters:
        by_type.setdefault(meter.event_type, []).append(meter)
    out: dict[str, MeterQuantity] = {}
    for event_type, type_meters in by_type.items():
        rows = (
            await session.execute(
                sa.select(usage_events.c.timestamp, usage_events.c.properties).where(
                    window_filter(customer_id, event_type, start, end)
                )
            )
        ).all()
        for meter in type_meters:
            out[meter.code] = MeterQuantity(
                meter.code, event_type, _quantity(meter, rows), len(rows)
            )
    return out


def _quantity(meter: Meter, rows) -> Decimal:
    if meter.aggregation == "count":
        return Decimal(len(rows))
    field = meter.field or ""
    if meter.aggregation == "unique_count":
        return Decimal(
            len(
                {
                    msgspec.json.encode(r.properties.get(field))
                    for r in rows
                    if field in r.properties
                }
            )
        )
    values = [(r.timestamp, n) for r in rows if (n := _number(r.properties.get(field))) is not None]
    if not values:
        return ZERO
    if meter.aggregation == "sum":
        return sum((n for _, n in values), ZERO)
    if meter.aggregation == "max":
        return max(n for _, n in values)
    # latest: the value of the event with the latest event time
    return max(values, key=lambda pair: pair[0])[1]
