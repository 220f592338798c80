"""The built-in billing engine: meters and price plans in the gateway's database, and
the rating function over them. A stand-in for a real billing system (Stripe Billing,
Chargebee, ...), behind the same port a remote one would sit behind."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec
from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict, NotFound
from canonical.model import Charge, Code, Meter, PricePlan, RatedCharge
from canonical.persistence import upsert
from canonical.time import utcnow
from system_apis.billing.port import (
    EventType,
    MeterList,
    PlanList,
    PlanRef,
    RatingRequest,
    fits,
)
from system_apis.billing.reference.rating import rate_plan
from system_apis.billing.reference.tables import meters, plans
from system_apis.billing.reference.validation import (
    check_meter,
    check_plan,
    usage_meter_codes,
)

__all__ = ["ReferenceBilling"]


def _event_types(event_types: Collection[str]) -> list[str]:
    """The event types a meter could have (the rest cannot match, nor reach the database)."""
    return sorted({t for t in event_types if fits(t, EventType)})


async def _upsert(s: AsyncSession, table, values: dict[str, Any]) -> Row:
    """Insert, or on an existing ``code`` replace everything but id and created_at; the
    row as stored (with the kept id), returned by the same statement."""
    stmt = upsert(table, s.bind.dialect.name, values, ["code"], keep=("id", "created_at"))
    try:
        result = await s.execute(stmt.returning(*table.c))
    except IntegrityError:
        raise Conflict(f"id {values['id']!r} already belongs to another {table.name}") from None
    return result.one()


def _meter(row) -> Meter:
    return Meter(
        id=row.id,
        code=row.code,
        name=row.name,
        event_type=row.event_type,
        aggregation=row.aggregation,
        field=row.field,
        unit=row.unit,
    )


def _plan(row) -> PricePlan:
    charges = msgspec.convert(row.charges, list[Charge])
    return PricePlan(
        id=row.id, code=row.code, name=row.name, currency=row.currency, charges=charges
    )


class ReferenceBilling:
    """Implements ``BillingPort`` on the ``billing_meters`` and ``billing_plans`` tables."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    # --- meters ----------------------------------------------------------------------

    async def put_meter(self, meter: Meter) -> Meter:
        check_meter(meter)
        values = msgspec.structs.asdict(meter) | {"created_at": utcnow()}
        async with self._sessions.begin() as s:
            row = await _upsert(s, meters, values)
        return _meter(row)

    async def get_meter(self, code: str) -> Meter:
        row = None
        if fits(code, Code):
            async with self._sessions.begin() as s:
                query = select(meters).where(meters.c.code == code)
                row = (await s.execute(query)).one_or_none()
        if row is None:
            raise NotFound(f"meter {code!r} does not exist")
        return _meter(row)

    async def meters_page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> MeterList:
        query = select(meters).order_by(meters.c.id).limit(limit + 1)
        if starting_after is not None:
            query = query.where(meters.c.id > starting_after)
        if event_types is not None:
            wanted = _event_types(event_types)
            if not wanted:
                return MeterList(data=[], has_more=False)
            query = query.where(meters.c.event_type.in_(wanted))
        async with self._sessions.begin() as s:
            rows = (await s.execute(query)).all()
        return MeterList(data=[_meter(r) for r in rows[:limit]], has_more=len(rows) > limit)

    # Whole lists are one query each, not a query (and a transaction) per page.
    async def list_meters(self) -> list[Meter]:
        async with self._sessions() as s:
            return [_meter(r) for r in await s.execute(select(meters).order_by(meters.c.id))]

    async def meters_for_event_types(self, event_types: Collection[str]) -> dict[str, list[Meter]]:
        found: dict[str, list[Meter]] = {}
        wanted = _event_types(event_types)
        if not wanted:
            return found
        query = select(meters).where(meters.c.event_type.in_(wanted)).order_by(meters.c.id)
        async with self._sessions() as s:
            for row in await s.execute(query):
                found.setdefault(row.event_type, []).append(_meter(row))
        return found

    # --- plans -----------------------------------------------------------------------

    async def put_plan(self, plan: PricePlan) -> PricePlan:
        check_plan(plan)
        wanted = usage_meter_codes(plan)
        values = msgspec.structs.asdict(plan) | {"created_at": utcnow()}
        async with self._sessions.begin() as s:
            if wanted:
                query = select(meters.c.code).where(meters.c.code.in_(sorted(wanted)))
                missing = wanted - set((await s.execute(query)).scalars())
                if missing:  # a missing referenced resource, as in the CRM's parent check
                    raise NotFound(
                        f"plan {plan.code!r} refers to meters that do not exist: "
                        + ", ".join(sorted(missing))
                    )
            row = await _upsert(s, plans, values)
        return _plan(row)

    async def get_plan(self, plan_id: str) -> PricePlan:
        row = None
        if fits(plan_id, PlanRef):
            async with self._sessions.begin() as s:
                for column in (plans.c.id, plans.c.code):
                    row = (await s.execute(select(plans).where(column == plan_id))).one_or_none()
                    if row is not None:
                        break
        if row is None:
            raise NotFound(f"plan {plan_id!r} does not exist")
        return _plan(row)

    async def plans_page(self, *, limit: int, starting_after: str | None = None) -> PlanList:
        query = select(plans).order_by(plans.c.id).limit(limit + 1)
        if starting_after is not None:
            query = query.where(plans.c.id > starting_after)
        async with self._sessions.begin() as s:
            rows = (await s.execute(query)).all()
        return PlanList(data=[_plan(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def list_plans(self) -> list[PricePlan]:
        async with self._sessions() as s:
            return [_plan(r) for r in await s.execute(select(plans).order_by(plans.c.id))]

    # --- rating ----------------------------------------------------------------------

    async def rate(self, request: RatingRequest) -> list[RatedCharge]:
        plan = await self.get_plan(request.plan_id)
        return rate_plan(
            plan,
            period_start=request.period_start,
            period_end=request.period_end,
            service_start=request.service_start,
            service_end=request.service_end,
            quantities=request.quantities,
        )
