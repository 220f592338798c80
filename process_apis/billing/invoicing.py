"""Billing subscriptions for one period, in three steps a run drives chunk by chunk:

1. ``usage``: the usage of a chunk of subscriptions, aggregated in SQL for every service
   segment at once (split at amendments, cut at their start and end);
2. ``draft``: for one subscription, each segment rated through the billing port, the
   charges taxed through the tax port per currency: one invoice per currency (a draft
   while the period's grace window is open, else finalized), not yet numbered;
3. ``write``: the drafts of many subscriptions numbered and written with their outbox
   rows in one transaction.

The unique index on (subscription, period, legal entity, currency, kind) makes a second
write of the same invoice fail: the batch is rolled back whole and written again one
invoice per transaction, skipping those that exist, so a resumed or concurrent run
never bills twice, and a crash mid-batch leaves nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation, errors
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
from process_apis.audit import AuditEvent, append_many
from process_apis.billing.aggregation import (
    MeterQuantity,
    UsageWindow,
    aggregate,
    aggregate_windows,
)
from process_apis.billing.drafts import Draft, status_for
from process_apis.billing.segments import plan_meters, rate_segment, segment_window, segments
from process_apis.invoices.store import next_invoice_numbers, write_invoices
from process_apis.posting.service import posting_date
from process_apis.retries import transient_retrying
from process_apis.tables import invoices
from system_apis.billing.port import BillingPort
from system_apis.crm.port import CrmPort
from system_apis.erp.port import ErpPort
from system_apis.tax.port import TaxableLine, TaxPort, TaxRequest

__all__ = ["Draft", "RunMasterData", "SubscriptionBiller", "Usage"]

# Customers per page when a run reads them all (the most the CRM contract serves).
_PAGE = 100
# Subscriptions drafted at once (calls in flight to the billing and tax ports). One on
# SQLite: its single writer and aiosqlite's threads (which share the GIL) serialise the
# ports' database work anyway, and their contention costs more than it overlaps.
_CONCURRENT = 8
# A rated charge (for its service window, ``period_start``/``period_end``) with the
# quantity behind it.
Rated = tuple[RatedCharge, MeterQuantity | None]
# Quantities per service window, from ``SubscriptionBiller.usage``.
Usage = Mapping[UsageWindow, Mapping[str, MeterQuantity]]


async def _cached(cache: dict, key: str, load):
    if key not in cache:
        cache[key] = await load(key)
    return cache[key]


class RunMasterData:
    """Plans, meters, legal entities and customers read once per run, not once per
    subscription."""

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

    def plan_meters(self, plan: PricePlan) -> list[Meter]:
        return plan_meters(plan, self.meters)

    async def legal_entity(self, entity_id: str) -> LegalEntity:
        return await _cached(self._entities, entity_id, self._erp.get_legal_entity)

    async def customer(self, customer_id: str) -> Customer:
        return await _cached(self.customers, customer_id, self._crm.get_customer)

    async def load_customers(self, wanted: set[str]) -> None:
        """Read the customers in ``wanted`` a page at a time (for a run over every
        customer: a hundred per call instead of one); those not found are asked for one
        by one later, and a missing one holds its subscription then."""
        after = None
        while True:
            page, more = await self._crm.list_customers(limit=_PAGE, starting_after=after)
            self.customers.update((c.id, c) for c in page if c.id in wanted)
            if not more or not page:
                return
            after = page[-1].id


class SubscriptionBiller:
    def __init__(
        self,
        sessions: async_sessionmaker,
        billing: BillingPort,
        tax: TaxPort,
        *,
        grace: timedelta = timedelta(0),
    ) -> None:
        self._sessions = sessions
        self._billing = billing
        self._tax = tax
        # Invoices of a period are drafts until this long after it ends (``drafts``).
        self.grace = grace

    async def usage(
        self, subscriptions: list[Subscription], period: Period, masters: RunMasterData
    ) -> Usage:
        """The quantities of every segment of ``subscriptions`` in ``period``. A
        subscription whose plan cannot be read is left out: ``draft`` meets the error
        again, and the run holds that subscription alone."""
        wanted: dict[UsageWindow, list[Meter]] = defaultdict(list)
        for subscription in subscriptions:
            for segment in segments(subscription, period):
                try:
                    plan = await masters.plan(segment.plan_id)
                except errors.MeterlineError:
                    continue
                window = segment_window(subscription.customer_id, segment)
                wanted[window].extend(masters.plan_meters(plan))
        if not wanted:
            return {}
        async with self._sessions() as session:
            return await aggregate_windows(session, wanted)

    async def usage_ahead(
        self,
        chunks: list[list[Subscription]],
        period: Period,
        masters: RunMasterData,
        billed: set[str],
    ) -> AsyncIterator[tuple[list[Subscription], Usage]]:
        """Each chunk with the usage of its subscriptions not in ``billed``; the next
        chunk's is aggregated (by the database) while the caller bills this one. Close
        it (``contextlib.aclosing``) to stop the one in progress."""

        def start(chunk: list[Subscription]) -> asyncio.Future[Usage]:
            todo = [s for s in chunk if s.id not in billed]
            return asyncio.ensure_future(self.usage(todo, period, masters))

        following = start(chunks[0]) if chunks else None
        try:
            for k, chunk in enumerate(chunks):
                assert following is not None
                usage = await following
                following = start(chunks[k + 1]) if k + 1 < len(chunks) else None
                yield chunk, usage
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following

    async def draft(
        self,
        run_id: str,
        subscription: Subscription,
        period: Period,
        masters: RunMasterData,
        usage: Usage,
    ) -> list[Draft]:
        """Rate and tax the subscription for ``period``: its invoices, one per currency
        (none: nothing to bill). ``usage`` holds its quantities (else they are read)."""
        customer = await masters.customer(subscription.customer_id)
        rated: list[Rated] = []
        for segment in segments(subscription, period):
            plan = await masters.plan(segment.plan_id)
            plan_meters = masters.plan_meters(plan)
            window = segment_window(customer.id, segment)
            quantities = usage.get(window, {})
            if any(m.code not in quantities for m in plan_meters):
                async with self._sessions() as session:
                    quantities = await aggregate(
                        session, customer.id, plan_meters, window.start, window.end
                    )
            charges = await rate_segment(self._billing, period, segment, plan_meters, quantities)
            rated.extend((c, quantities.get(c.meter_code or "")) for c in charges)
        if not rated:
            return []
        entity = await masters.legal_entity(customer.legal_entity_id)
        by_currency: dict[str, list[Rated]] = defaultdict(list)
        for item in rated:
            by_currency[item[0].currency].append(item)
        return [
            await self._invoice(run_id, subscription, period, customer, entity, currency, group)
            for currency, group in by_currency.items()
        ]

    async def draft_many(
        self,
        run_id: str,
        subscriptions: list[Subscription],
        period: Period,
        masters: RunMasterData,
        usage: Usage,
        *,
        before_pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> dict[str, list[Draft] | Exception]:
        """``draft`` for each subscription, up to ``_CONCURRENT`` at a time (rating and tax
        are calls to other systems: waited for together, not one after the other); per
        subscription id, its drafts or the error it raised. ``before_pause(seconds)`` is
        awaited before a retry waits out a system's pause (the run extends its lease)."""
        bind = self._sessions.kw.get("bind")
        sqlite = bind is not None and bind.dialect.name == "sqlite"
        gate = asyncio.Semaphore(1 if sqlite else _CONCURRENT)

        async def one(subscription: Subscription) -> list[Draft] | Exception:
            async with gate:
                try:
                    # A wrapped system that is briefly down or throttling is waited for;
                    # only what still fails after the retries is held.
                    async for attempt in transient_retrying(before_pause=before_pause):
                        with attempt:
                            return await self.draft(run_id, subscription, period, masters, usage)
                except Exception as exc:  # the run decides: hold it, or fail
                    return exc
                raise AssertionError("unreachable: the retries return or raise")

        drafted = await asyncio.gather(*(one(s) for s in subscriptions))
        return {s.id: d for s, d in zip(subscriptions, drafted, strict=True)}

    async def _invoice(
        self,
        run_id: str,
        subscription: Subscription,
        period: Period,
        customer: Customer,
        entity: LegalEntity,
        currency: str,
        group: list[Rated],
    ) -> Draft:
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
                service_start=c.period_start,
                service_end=c.period_end,
            )
            for (c, q), tax in zip(group, taxes, strict=True)
        ]
        subtotal = total((line.amount for line in lines), currency)
        tax_total = total((line.tax.amount for line in lines), currency)
        invoice = Invoice(
            id=new_id("inv"),
            number="",  # given when written
            customer_id=customer.id,
            subscription_id=subscription.id,
            legal_entity_id=entity.id,
            currency=currency,
            period_start=period.first_day,
            period_end=period.end.date(),
            status=status_for(period, self.grace),
            lines=lines,
            subtotal=subtotal,
            tax_total=tax_total,
            total=subtotal + tax_total,
            run_id=run_id,
            correlation_id=correlation.current(),
            erp_document_id=None,
            created_at=utcnow(),
        )
        return invoice, [q.event_type if q else None for _, q in group]

    async def write(self, batch: list[list[Draft]]) -> list[int]:
        """Write the drafts of many subscriptions; per subscription, how many of its
        invoices were written (fewer: another run wrote them first)."""
        drafts = [draft for subscription in batch for draft in subscription]
        try:
            async with self._sessions.begin() as session:
                await _write(session, drafts)
            return [len(subscription) for subscription in batch]
        except IntegrityError:
            pass
        # Some exist already (a concurrent or earlier runner): one transaction each. Any
        # other integrity failure is an error, not an invoice to skip.
        created = []
        for subscription in batch:
            written = 0
            for draft in subscription:
                try:
                    async with self._sessions.begin() as session:
                        await _write(session, [draft])
                except IntegrityError:
                    if not await self._exists(draft[0]):
                        raise
                    continue
                written += 1
            created.append(written)
        return created

    async def _exists(self, invoice: Invoice) -> bool:
        """Whether the invoice a draft stands for is written already (by another run)."""
        async with self._sessions() as session:
            found = await session.execute(
                sa.select(invoices.c.id).where(
                    invoices.c.subscription_id == invoice.subscription_id,
                    invoices.c.period_start == invoice.period_start,
                    invoices.c.legal_entity_id == invoice.legal_entity_id,
                    invoices.c.currency == invoice.currency,
                    invoices.c.kind == "invoice",
                )
            )
            return found.first() is not None


async def _write(session: AsyncSession, drafts: list[Draft]) -> None:
    """Number the drafts (consecutively per legal entity and year, in order) and write
    them in ``session``'s transaction."""
    by_series: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (invoice, _) in enumerate(drafts):
        by_series[invoice.legal_entity_id, invoice.period_start.year].append(i)
    numbered = list(drafts)
    for (entity_id, year), positions in by_series.items():
        numbers = await next_invoice_numbers(session, entity_id, year, len(positions))
        for i, number in zip(positions, numbers, strict=True):
            invoice, event_types = drafts[i]
            numbered[i] = (msgspec.structs.replace(invoice, number=number), event_types)
    await write_invoices(session, numbered)
    await append_many(
        session,
        [
            AuditEvent(
                action=f"invoice.{invoice.status}",  # finalized, or draft (grace window)
                subject_type="invoice",
                subject_id=invoice.id,
                data={
                    "number": invoice.number,
                    "run_id": invoice.run_id,
                    "total": str(invoice.total),
                    "currency": invoice.currency,
                },
            )
            for invoice, _ in numbered
        ],
    )
