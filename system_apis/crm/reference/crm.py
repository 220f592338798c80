"""The reference CRM: a stand-in for a real CRM, persisted in the gateway's database.

Writes are upserts by id (a CRM is the master of its ids), so replaying a write is
harmless. Amendments live in their own table and are replaced with the subscription.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from datetime import date

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.errors import Conflict, NotFound
from canonical.ids import new_id
from canonical.model import Amendment, Customer, Subscription
from canonical.persistence import upsert
from canonical.time import utcnow
from system_apis.chunks import sorted_chunks
from system_apis.crm.reference import rules
from system_apis.crm.reference.tables import accounts, amendments, subscriptions

__all__ = ["ReferenceCrm"]

# Stays well under SQLite's and asyncpg's bound-parameter limits.
CHUNK = 500
# A real hierarchy is a handful of levels deep; a longer walk means corrupt data.
MAX_DEPTH = 100

_CUSTOMER_COLUMNS = [
    "name",
    "legal_entity_id",
    "billing_country",
    "currency",
    "tax_status",
    "tax_id",
    "us_state",
    "parent_id",
    "partner_id",
]


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """The values that can be ids, in ``IN`` lists of at most ``CHUNK``."""
    return sorted_chunks((v for v in values if rules.is_id(v)), CHUNK)


def _customer(row) -> Customer:
    return Customer(id=row.id, **{c: getattr(row, c) for c in _CUSTOMER_COLUMNS})


class ReferenceCrm:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    # --- customers -------------------------------------------------------------------

    async def put_customer(self, customer: Customer) -> Customer:
        rules.check_customer(customer)
        now = utcnow()
        async with self._sessions.begin() as s:
            if customer.parent_id is not None:
                await self._check_parent(s, customer.id, customer.parent_id)
            row = {"id": customer.id, "created_at": now, "updated_at": now}
            row |= {c: getattr(customer, c) for c in _CUSTOMER_COLUMNS}
            await s.execute(upsert(accounts, s.bind.dialect.name, row, ["id"]))
        return customer

    async def _check_parent(self, s: AsyncSession, customer_id: str, parent_id: str) -> None:
        """The parent must exist and must not descend from the customer (no cycles)."""
        current: str | None = parent_id
        for _ in range(MAX_DEPTH):
            if current is None:
                return
            if current == customer_id:
                raise Conflict(
                    f"parent {parent_id} would make the hierarchy cyclic", code="parent_cycle"
                )
            found = await s.execute(sa.select(accounts.c.parent_id).where(accounts.c.id == current))
            row = found.first()
            if row is None:
                raise NotFound(f"parent customer {current} not found", code="parent_not_found")
            current = row.parent_id
        raise Conflict("customer hierarchy too deep", code="hierarchy_too_deep")

    async def get_customer(self, customer_id: str) -> Customer:
        if rules.is_id(customer_id):
            async with self._sessions() as s:
                query = sa.select(accounts).where(accounts.c.id == customer_id)
                row = (await s.execute(query)).first()
            if row is not None:
                return _customer(row)
        raise NotFound(f"customer {customer_id[:80]} not found", code="customer_not_found")

    async def list_customers(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        partner_id: str | None = None,
    ) -> tuple[list[Customer], bool]:
        query = sa.select(accounts).order_by(accounts.c.id).limit(limit + 1)
        if starting_after is not None:
            query = query.where(accounts.c.id > starting_after)
        if partner_id is not None:
            if not rules.is_id(partner_id):
                return [], False
            query = query.where(accounts.c.partner_id == partner_id)
        async with self._sessions() as s:
            rows = (await s.execute(query)).all()
        return [_customer(r) for r in rows[:limit]], len(rows) > limit

    async def known_customer_ids(self, ids: Collection[str]) -> set[str]:
        known: set[str] = set()
        async with self._sessions() as s:
            for chunk in _chunks(ids):
                found = await s.execute(sa.select(accounts.c.id).where(accounts.c.id.in_(chunk)))
                known.update(found.scalars())
        return known

    # --- subscriptions ---------------------------------------------------------------

    async def put_subscription(self, subscription: Subscription) -> Subscription:
        rules.check_subscription(subscription)
        now = utcnow()
        async with self._sessions.begin() as s:
            await self._require_customer(s, subscription.customer_id)
            row = {
                "id": subscription.id,
                "customer_id": subscription.customer_id,
                "plan_id": subscription.plan_id,
                "start_date": subscription.start_date,
                "end_date": subscription.end_date,
                "created_at": now,
                "updated_at": now,
            }
            await s.execute(upsert(subscriptions, s.bind.dialect.name, row, ["id"]))
            # A PUT carries the whole subscription: its amendments replace the stored ones.
            await s.execute(
                sa.delete(amendments).where(amendments.c.subscription_id == subscription.id)
            )
            await _insert_amendments(s, subscription.id, subscription.amendments)
        return _with_amendments(subscription, subscription.amendments)

    async def _require_customer(self, s: AsyncSession, customer_id: str) -> None:
        found = await s.execute(sa.select(accounts.c.id).where(accounts.c.id == customer_id))
        if found.first() is None:
            raise NotFound(f"customer {customer_id} not found", code="customer_not_found")

    async def get_subscription(self, subscription_id: str) -> Subscription:
        if rules.is_id(subscription_id):
            async with self._sessions() as s:
                found = await self._load(s, subscriptions.c.id == subscription_id)
            if found:
                return found[0]
        raise _subscription_not_found(subscription_id)

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        if not rules.is_id(customer_id):
            return []
        async with self._sessions() as s:
            return await self._load(s, subscriptions.c.customer_id == customer_id)

    async def subscriptions_active_between(
        self, start: date, end: date, customer_ids: Collection[str] | None = None
    ) -> list[Subscription]:
        found: list[Subscription] = []
        async with self._sessions() as s:
            if customer_ids is None:
                return await self._load(s, *_overlapping(start, end))
            for chunk in _chunks(customer_ids):
                found += await self._load(
                    s, subscriptions.c.customer_id.in_(chunk), *_overlapping(start, end)
                )
        return sorted(found, key=lambda sub: sub.id)

    async def active_subscriptions_page(
        self,
        start: date,
        end: date,
        *,
        customer_ids: Collection[str] | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> tuple[list[Subscription], bool]:
        conditions = list(_overlapping(start, end))
        if starting_after is not None:
            conditions.append(subscriptions.c.id > starting_after)
        if customer_ids is not None:
            conditions.append(
                subscriptions.c.customer_id.in_([c for c in set(customer_ids) if rules.is_id(c)])
            )
        async with self._sessions() as s:
            found = await self._load(s, *conditions, limit=limit + 1)
        return found[:limit], len(found) > limit

    async def add_amendment(self, subscription_id: str, amendment: Amendment) -> Subscription:
        rules.require_id(amendment.plan_id, "plan_id")
        if not rules.is_id(subscription_id):
            raise _subscription_not_found(subscription_id)
        async with self._sessions.begin() as s:
            # Write the subscription row first: that locks it, so concurrent amendments of
            # one subscription queue here and the clash check below sees committed state
            # (a read first would race, and on SQLite fail to upgrade to a write).
            await s.execute(
                sa.update(subscriptions)
                .where(subscriptions.c.id == subscription_id)
                .values(updated_at=utcnow())
            )
            found = await self._load(s, subscriptions.c.id == subscription_id)
            if not found:
                raise _subscription_not_found(subscription_id)
            sub = found[0]
            rules.check_amendment_date(sub, amendment.effective_from)
            if any(a.effective_from == amendment.effective_from for a in sub.amendments):
                raise Conflict(
                    f"an amendment already takes effect on {amendment.effective_from}",
                    code="amendment_exists",
                )
            await _insert_amendments(s, sub.id, [amendment])
        return _with_amendments(sub, [*sub.amendments, amendment])

    async def _load(self, s: AsyncSession, *where, limit: int | None = None) -> list[Subscription]:
        """Subscriptions matching ``where`` (sorted by id) with their amendments."""
        query = sa.select(subscriptions).where(*where).order_by(subscriptions.c.id)
        if limit is not None:
            query = query.limit(limit)
        rows = (await s.execute(query)).all()
        by_sub: dict[str, list[Amendment]] = defaultdict(list)
        for chunk in _chunks(r.id for r in rows):
            found = await s.execute(
                sa.select(
                    amendments.c.subscription_id, amendments.c.effective_from, amendments.c.plan_id
                ).where(amendments.c.subscription_id.in_(chunk))
            )
            for a in found:
                by_sub[a.subscription_id].append(Amendment(a.effective_from, a.plan_id))
        return [
            Subscription(
                id=r.id,
                customer_id=r.customer_id,
                plan_id=r.plan_id,
                start_date=r.start_date,
                end_date=r.end_date,
                amendments=sorted(by_sub[r.id], key=lambda a: a.effective_from),
            )
            for r in rows
        ]


def _overlapping(start: date, end: date) -> tuple:
    """Overlap with [start, end): starts before ``end`` and ends (exclusive) after ``start``."""
    return (
        subscriptions.c.start_date < end,
        sa.or_(subscriptions.c.end_date.is_(None), subscriptions.c.end_date > start),
    )


async def _insert_amendments(s: AsyncSession, sub_id: str, items: list[Amendment]) -> None:
    """One INSERT for all of ``items`` (a PUT may carry up to 100), not one per row."""
    if not items:
        return
    now = utcnow()
    await s.execute(
        sa.insert(amendments),
        [
            {
                "id": new_id("amd"),
                "subscription_id": sub_id,
                "effective_from": a.effective_from,
                "plan_id": a.plan_id,
                "created_at": now,
            }
            for a in items
        ],
    )


def _with_amendments(sub: Subscription, items: list[Amendment]) -> Subscription:
    return msgspec.structs.replace(sub, amendments=sorted(items, key=lambda a: a.effective_from))


def _subscription_not_found(subscription_id: str) -> NotFound:
    return NotFound(f"subscription {subscription_id[:80]} not found", code="subscription_not_found")
