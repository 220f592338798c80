"""The CRM System API contract: the port the process layer depends on, and the request and
list Structs of its HTTP form (``/system/crm/v1``).

Request Structs state their valid shape in the schema (lengths, patterns, enums), so the
served contract, the decoder and a fuzzer agree on what a valid request is; the port
itself speaks the canonical ``Customer`` / ``Subscription`` / ``Amendment``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Annotated, Protocol

import msgspec
from babel.numbers import list_currencies

from canonical.model import (
    Amendment,
    Base,
    Country,
    Customer,
    Page,
    Subscription,
    TaxStatus,
)

__all__ = [
    "ID_PATTERN",
    "MAX_FILTER",
    "MAX_LOOKUP",
    "AmendmentInput",
    "CrmPort",
    "CustomerIds",
    "CustomerInput",
    "CustomerList",
    "Id",
    "KnownCustomers",
    "SubscriptionInput",
    "SubscriptionList",
]

# Identifiers fit the 64-character key columns and never carry control characters.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
TaxId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,63}$")]
UsState = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
# The ISO 4217 codes the money kernel knows (``canonical.money.is_currency``), stated in
# the schema so that a well-formed but unknown code is refused as invalid input.
IsoCurrency = Annotated[
    str,
    msgspec.Meta(
        pattern="^(" + "|".join(sorted(c for c in list_currencies() if c.isupper())) + ")$"
    ),
]
MAX_LOOKUP = 1000  # ids per ``POST /known-customers``
MAX_FILTER = 100  # customer_id filters per ``GET /active-subscriptions``


class CustomerInput(Base):
    """A customer account as written by ``POST /customers`` (server-assigned id) or
    ``PUT /customers/{id}`` (caller-chosen id)."""

    name: Name
    legal_entity_id: Id
    billing_country: Country
    currency: IsoCurrency
    tax_status: TaxStatus = "taxable"
    tax_id: TaxId | None = None
    us_state: UsState | None = None
    parent_id: Id | None = None
    partner_id: Id | None = None

    def with_id(self, customer_id: str) -> Customer:
        return Customer(id=customer_id, **msgspec.structs.asdict(self))

    @classmethod
    def of(cls, customer: Customer) -> CustomerInput:
        fields = msgspec.structs.asdict(customer)
        del fields["id"]
        return cls(**fields)


class AmendmentInput(Base):
    effective_from: date
    plan_id: Id

    def to_canonical(self) -> Amendment:
        return Amendment(effective_from=self.effective_from, plan_id=self.plan_id)


class SubscriptionInput(Base):
    customer_id: Id
    plan_id: Id
    start_date: date
    end_date: date | None = None  # exclusive
    amendments: Annotated[list[AmendmentInput], msgspec.Meta(max_length=100)] = []

    def with_id(self, subscription_id: str) -> Subscription:
        return Subscription(
            id=subscription_id,
            customer_id=self.customer_id,
            plan_id=self.plan_id,
            start_date=self.start_date,
            end_date=self.end_date,
            amendments=[a.to_canonical() for a in self.amendments],
        )

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionInput:
        return cls(
            customer_id=sub.customer_id,
            plan_id=sub.plan_id,
            start_date=sub.start_date,
            end_date=sub.end_date,
            amendments=[AmendmentInput(a.effective_from, a.plan_id) for a in sub.amendments],
        )


class CustomerIds(Base):
    """Body of ``POST /known-customers``: which of these ids exist?"""

    ids: Annotated[list[str], msgspec.Meta(max_length=MAX_LOOKUP)]


class KnownCustomers(Base):
    ids: list[str]


class CustomerList(Page, kw_only=True):
    data: list[Customer]


class SubscriptionList(Page, kw_only=True):
    data: list[Subscription]


class CrmPort(Protocol):
    """Accounts (with parent hierarchy and owning partner) and their subscriptions.

    Errors: ``NotFound`` for unknown ids (also an unknown parent or customer referenced
    by a write), ``Conflict`` for a parent cycle or an amendment clashing with a stored one,
    ``BusinessRuleViolation`` for input a CRM refuses (a bad term, an amendment outside
    it, an unknown currency, an id that cannot be a key)."""

    async def put_customer(self, customer: Customer) -> Customer: ...

    async def get_customer(self, customer_id: str) -> Customer: ...

    async def list_customers(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        partner_id: str | None = None,
    ) -> tuple[list[Customer], bool]: ...

    async def known_customer_ids(self, ids: Collection[str]) -> set[str]: ...

    async def put_subscription(self, subscription: Subscription) -> Subscription: ...

    async def get_subscription(self, subscription_id: str) -> Subscription: ...

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]: ...

    async def subscriptions_active_between(
        self, start: date, end: date, customer_ids: Collection[str] | None = None
    ) -> list[Subscription]:
        """Subscriptions overlapping [start, end), with amendments, sorted by id."""
        ...

    async def active_subscriptions_page(
        self,
        start: date,
        end: date,
        *,
        customer_ids: Collection[str] | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> tuple[list[Subscription], bool]:
        """One page of ``subscriptions_active_between`` (the HTTP form pages it)."""
        ...

    async def add_amendment(self, subscription_id: str, amendment: Amendment) -> Subscription: ...
