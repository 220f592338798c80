"""Billing runs: for a calendar month, rate every active subscription through the
billing port, tax each line through the tax port, write finalized invoices with their
outbox rows, then post them to the ERP.

A run is idempotent per period: an invoice that already exists for a subscription,
period, legal entity and currency is skipped, so re-running a period adds nothing."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, time
from typing import Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation, errors
from canonical.ids import new_id
from canonical.model import (
    Base,
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
from process_apis.exceptions.service import raise_exception
from process_apis.invoices.store import next_invoice_number, write_invoice
from process_apis.paging import fetch_page
from process_apis.posting.service import PostingService, posting_date
from process_apis.tables import billing_runs, invoices
from process_apis.usage.service import UsageService
from system_apis.billing.port import BillingPort, RatingRequest
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort
from system_apis.tax.port import TaxableLine, TaxPort, TaxRequest

__all__ = ["BillingRun", "BillingRunService", "RunCounts"]

log = logging.getLogger("meterline.billing")

# Subscription ids per IN (...) lookup: well below every backend's bound-parameter limit.
_ID_CHUNK = 1000


class RunCounts(Base):
    subscriptions: int = 0
    invoiced: int = 0
    skipped: int = 0
    posted: int = 0
    failed: int = 0


class BillingRun(Base):
    id: str
    period: str
    status: Literal["running", "completed"]
    customer_ids: list[str] | None
    counts: RunCounts
    correlation_id: str | None
    created_at: datetime
    completed_at: datetime | None


def _run(row) -> BillingRun:
    return BillingRun(
        id=row.id,
        period=row.period,
        status=row.status,
        customer_ids=row.customer_ids,
        counts=msgspec.convert(row.counts, RunCounts),
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


async def _cached(cache: dict, key: str, load):
    if key not in cache:
        cache[key] = await load(key)
    return cache[key]


class _RunMasterData:
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


class BillingRunService:
    def __init__(
        self,
        sessions: async_sessionmaker,
        crm: CrmPort,
        billing: BillingPort,
        tax: TaxPort,
        erp: ErpPort,
        posting: PostingService,
        usage: UsageService,
    ) -> None:
        self._sessions = sessions
        self._crm = crm
        self._billing = billing
        self._tax = tax
        self._erp = erp
        self._posting = posting
        self._usage = usage

    async def get(self, run_id: str) -> BillingRun:
        async with self._sessions() as session:
            row = (
                await session.execute(sa.select(billing_runs).where(billing_runs.c.id == run_id))
            ).first()
        if row is None:
            raise errors.NotFound(f"billing run {run_id} not found")
        return _run(row)

    async def list(self, *, limit: int = 50, starting_after: str | None = None):
        async with self._sessions() as session:
            rows, has_more = await fetch_page(
                session, billing_runs, [], limit=limit, starting_after=starting_after
            )
        return [_run(r) for r in rows], has_more

    async def run(self, period: Period, customer_ids: list[str] | None = None) -> BillingRun:
        run_id = new_id("run")
        counts = RunCounts()
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                billing_runs.insert().values(
                    id=run_id,
                    period=str(period),
                    status="running",
                    customer_ids=customer_ids,
                    counts=counts,
                    correlation_id=correlation.current(),
                    created_at=now,
                )
            )
        await self._usage.rematch()
        subscriptions = await self._crm.subscriptions_active_between(
            period.first_day, period.end.date(), customer_ids
        )
        masters = _RunMasterData(
            self._crm, self._billing, self._erp, await self._billing.list_meters()
        )
        billed = await self._billed_subscriptions([s.id for s in subscriptions], period)
        for subscription in subscriptions:
            counts.subscriptions += 1
            if subscription.id in billed:
                counts.skipped += 1
                continue
            try:
                created = await self._invoice_subscription(run_id, subscription, period, masters)
            except (
                errors.UpstreamError,
                errors.BusinessRuleViolation,
                errors.NotFound,
                errors.InvalidRequest,
            ) as exc:
                counts.failed += 1
                await self._hold(subscription, period, exc)
                continue
            counts.invoiced += created
            counts.skipped += 0 if created else 1
        posted = await self._posting.post_pending(run_id=run_id, customers=masters.customers)
        counts.posted, counts.failed = posted.posted, counts.failed + posted.failed
        async with self._sessions.begin() as session:
            await session.execute(
                sa.update(billing_runs)
                .where(billing_runs.c.id == run_id)
                .values(status="completed", counts=counts, completed_at=utcnow())
            )
        return await self.get(run_id)

    async def _hold(self, subscription: Subscription, period: Period, exc: errors.MeterlineError):
        log.warning("billing of %s for %s held: %s", subscription.id, period, exc.detail)
        async with self._sessions.begin() as session:
            await raise_exception(
                session,
                "billing_failed",
                f"{subscription.id}:{period}",
                exc.detail,
                {
                    "subscription_id": subscription.id,
                    "customer_id": subscription.customer_id,
                    "period": str(period),
                    "error_code": exc.code,
                },
            )

    async def _billed_subscriptions(self, subscription_ids: list[str], period: Period) -> set[str]:
        """Which of the subscriptions already have an invoice for ``period``: one query
        per chunk of ids (by the unique index), not one per subscription. A run racing
        this one is still caught by the unique constraint when writing."""
        billed: set[str] = set()
        async with self._sessions() as session:
            for i in range(0, len(subscription_ids), _ID_CHUNK):
                found = await session.execute(
                    sa.select(invoices.c.subscription_id).where(
                        invoices.c.subscription_id.in_(subscription_ids[i : i + _ID_CHUNK]),
                        invoices.c.period_start == period.first_day,
                        invoices.c.kind == "invoice",
                    )
                )
                billed.update(found.scalars())
        return billed

    async def _invoice_subscription(
        self, run_id: str, subscription: Subscription, period: Period, masters: _RunMasterData
    ) -> int:
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
