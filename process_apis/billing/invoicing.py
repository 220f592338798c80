"""Billing one subscription for one period: aggregate its usage per service segment (split
at amendments, cut at its start and end), rate each segment through the billing port, tax
the charges through the tax port per currency, and write one finalized invoice per
currency with its outbox row, in one transaction each.

The unique index on (subscription, period, legal entity, currency, kind) makes a second
write of the same invoice fail, so a resumed or concurrent run never bills twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation
from canonical.ids import new_id
from canonical.model import (
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Meter,
    PricePlan,
    RatedCharge,
    Subscription,
)
from canonical.money import total
from canonical.time import Period, utcnow
from process_apis.billing.aggregation import MeterQuantity, aggregate
from process_apis.billing.segments import segments
from process_apis.invoices.store import next_invoice_number, write_invoice
from process_apis.posting.service import posting_date
from system_apis.billing.port import BillingPort, RatingRequest
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort
from system_apis.tax.port import TaxableLine, TaxPort, TaxRequest

__all__ = ["RunMasterData", "SubscriptionBiller"]


async def _cached(cache: dict, key: str, load):
    if key not in cache:
        cache[key] = await load(key)
    return cache[key]


class RunMasterData:
    """Plans, meters, legal entities and customers read once per run, not once per
    subscription (the posting at the end of the run reuses the customers)."""

    def __init__(
        self, crm: CrmPort, billing: BillingPort, erp: ErpPort, meters: list[Meter]
    ) -> None:
        self._crm = crm
        self._billing = billing
        self._erp = erp
        self.meters = {m.code: m for m in meters}
        self._plans: dict[str, PricePlan] = {}
        self._entities: dict[str, LegalEntity] = {}
        self.customers: dict[str, Customer] = {}

    async def plan(self, plan_id: str) -> PricePlan:
        return await _cached(self._plans, plan_id, self._billing.get_plan)

    async def legal_entity(self, entity_id: str) -> LegalEntity:
        return await _cached(self._entities, entity_id, self._erp.get_legal_entity)

    async def customer(self, customer_id: str) -> Customer:
        return await _cached(self.customers, customer_id, self._crm.get_customer)


class SubscriptionBiller:
    def __init__(self, sessions: async_sessionmaker, billing: BillingPort, tax: TaxPort) -> None:
        self._sessions = sessions
        self._billing = billing
        self._tax = tax

    async def invoice(
        self, run_id: str, subscription: Subscription, period: Period, masters: RunMasterData
    ) -> int:
        """Rate, tax and write the subscription's invoices for ``period`` (one per
        currency); returns how many were written (0: nothing to bill, or a concurrent
        run wrote them first)."""
        customer = await masters.customer(subscription.customer_id)
        rated: list[tuple[RatedCharge, MeterQuantity | None]] = []
        for segment in segments(subscription, period):
            plan = await masters.plan(segment.plan_id)
            plan_meters = [
                masters.meters[c.meter_code]
                for c in plan.charges
                if getattr(c, "meter_code", None) in masters.meters
            ]
            async with self._sessions() as session:
                quantities = await aggregate(
                    session,
                    customer.id,
                    plan_meters,
                    _midnight(segment.start),
                    _midnight(segment.end),
                )
            charges = await self._billing.rate(
                RatingRequest(
                    plan_id=plan.id,
                    period_start=period.first_day,
                    period_end=period.end.date(),
                    service_start=segment.start,
                    service_end=segment.end,
                    quantities={code: q.quantity for code, q in quantities.items()},
                )
            )
            rated.extend((c, quantities.get(c.meter_code or "")) for c in charges)
        if not rated:
            return 0
        entity = await masters.legal_entity(customer.legal_entity_id)
        by_currency: dict[str, list[tuple[RatedCharge, MeterQuantity | None]]] = defaultdict(list)
        for charge, quantity in rated:
            by_currency[charge.currency].append((charge, quantity))
        created = 0
        for currency, group in by_currency.items():
            taxes = await self._tax.quote(
                TaxRequest(
                    seller_country=entity.country,
                    seller_us_state=entity.us_state,
                    customer_country=customer.billing_country,
                    customer_tax_status=customer.tax_status,
                    customer_tax_id=customer.tax_id,
                    customer_us_state=customer.us_state,
                    currency=currency,
                    # The tax point is the invoice's posting date: the period's last day.
                    tax_date=posting_date(period.end.date()),
                    lines=[
                        TaxableLine(reference=c.charge_code, item_code=c.item_code, amount=c.amount)
                        for c, _ in group
                    ],
                )
            )
            lines = [
                InvoiceLine(
                    id=new_id("il"),
                    charge_code=c.charge_code,
                    kind=c.kind,
                    description=c.description,
                    item_code=c.item_code,
                    meter_code=c.meter_code,
                    quantity=c.quantity,
                    unit_price=c.unit_price,
                    amount=c.amount,
                    tax=tax,
                    event_count=q.event_count if q and c.kind == "usage" else 0,
                )
                for (c, q), tax in zip(group, taxes, strict=True)
            ]
            subtotal = total((line.amount for line in lines), currency)
            tax_total = total((line.tax.amount for line in lines), currency)
            try:
                async with self._sessions.begin() as session:
                    invoice = Invoice(
                        id=new_id("inv"),
                        number=await next_invoice_number(session, entity.id, period.year),
                        customer_id=customer.id,
                        subscription_id=subscription.id,
                        legal_entity_id=entity.id,
                        currency=currency,
                        period_start=period.first_day,
                        period_end=period.end.date(),
                        status="finalized",
                        lines=lines,
                        subtotal=subtotal,
                        tax_total=tax_total,
                        total=subtotal + tax_total,
                        run_id=run_id,
                        correlation_id=correlation.current(),
                        erp_document_id=None,
                        created_at=utcnow(),
                    )
                    await write_invoice(
                        session, invoice, [q.event_type if q else None for _, q in group]
                    )
            except IntegrityError:
                continue  # a concurrent run billed it first: nothing is written twice
            created += 1
        return created


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)
