"""Corrections: late usage for an invoiced period becomes a debit or credit memo.

Usage that arrives for a period already invoiced is stored flagged ``adjustment = 1``.
When billing runs for that period again, each subscription with such events is rated
again for the whole period, exactly as its invoice was (segments, proration, tiers,
minimums), and compared, charge by charge, with what its documents bill so far (the
invoice, plus debit memos, minus credit memos). The differences become memos:

- charges that grew go on a **debit memo** (``DN`` series), charges that shrank on a
  **credit memo** (``CN``); both when a correction moves revenue between charges (late
  usage that fills a minimum commitment raises the usage line and lowers the true-up);
- the tax of each memo line is the difference between the tax of the re-rated line and
  the tax already billed, so the documents always add up to the period rated whole;
- because the period is rated whole, tiers make the difference non-linear: 100 late
  units in a cheaper tier cost less than 100 units would on their own.

The late events are marked ``adjustment = 2`` and ``corrected_by`` the memo carrying
their usage line, in the memos' transaction: each is corrected once, and an invoice
line's lineage (``adjustment = 0``) and a memo line's (``corrected_by``) never overlap.
Memos are posted to the ERP through the outbox like invoices, dated the day they are
issued."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation
from canonical.ids import new_id
from canonical.model import Invoice, InvoiceLine, Subscription, TaxLine
from canonical.money import total
from canonical.time import Period, utcnow
from process_apis.audit import append
from process_apis.billing.invoicing import RunMasterData, SubscriptionBiller
from process_apis.invoices.counting import direction
from process_apis.invoices.store import InvoiceStore, next_invoice_numbers, write_invoices
from process_apis.retries import transient_retrying
from process_apis.tables import usage_events

__all__ = ["Corrections"]


class _Billed(msgspec.Struct):
    """A charge of the period summed over lines: as billed so far (net of memos), or as
    re-rated now; ``line`` is one of its lines, for the memo line's descriptive fields."""

    amount: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    quantity: Decimal = Decimal(0)
    event_count: int = 0
    line: InvoiceLine | None = None
    event_type: str | None = None

    def add(self, line: InvoiceLine, sign: int, event_type: str | None = None) -> None:
        self.amount += sign * line.amount
        self.tax += sign * line.tax.amount
        self.quantity += sign * line.quantity
        self.event_count += sign * line.event_count
        self.line = self.line or line
        self.event_type = self.event_type or event_type


class Corrections:
    def __init__(self, sessions: async_sessionmaker, biller: SubscriptionBiller) -> None:
        self._sessions = sessions
        self._biller = biller
        self._invoices = InvoiceStore(sessions)

    async def pending(self, period: Period) -> set[str]:
        """Customers with late usage in ``period`` not corrected yet."""
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(usage_events.c.customer_id)
                .where(
                    usage_events.c.adjustment == 1,
                    usage_events.c.timestamp >= period.start,
                    usage_events.c.timestamp < period.end,
                )
                .distinct()
            )
            return set(rows.scalars())

    async def correct(
        self, run_id: str, subscription: Subscription, period: Period, masters: RunMasterData
    ) -> list[Invoice]:
        """Issue the memos correcting ``subscription``'s documents of ``period``; returns
        them (none: the late usage changes nothing billed)."""
        async for attempt in transient_retrying():
            with attempt:
                drafts = await self._biller.draft(run_id, subscription, period, masters, {})
        # The subscription's documents of the period, read once for every currency.
        standing = await self._invoices.of_subscription(subscription, period.first_day)
        memos: list[tuple[Invoice, list[str | None]]] = []
        metered: set[str] = set()
        for now, event_types in drafts:
            memos += self._memos(standing, now, event_types)
            metered.update(t for t in event_types if t is not None)
        async with self._sessions.begin() as session:
            # Taking the late events first makes a concurrent correction of the same
            # subscription find none and write nothing.
            taken = await self._mark_corrected(
                session, subscription.customer_id, period, metered, memos
            )
            if not taken:
                return []
            if memos:
                await self._number(session, memos)
                await write_invoices(session, memos)
                for memo, _ in memos:
                    await append(
                        session,
                        action=f"{memo.kind}.issued",
                        subject_type="invoice",
                        subject_id=memo.id,
                        data={
                            "number": memo.number,
                            "corrects": memo.corrects_invoice_id,
                            "total": str(memo.total),
                            "reason": "late usage",
                        },
                    )
        return [memo for memo, _ in memos]

    def _memos(
        self,
        standing: list[Invoice],
        rerated: Invoice,
        event_types: list[str | None],
    ) -> list[tuple[Invoice, list[str | None]]]:
        documents = [d for d in standing if d.currency == rerated.currency]
        original = next((d for d in documents if d.kind == "invoice"), None)
        if original is None:  # never invoiced: a run bills it, not a memo
            return []
        # Per charge: several lines of one code (segments split at an amendment) add up.
        billed: dict[str, _Billed] = defaultdict(_Billed)
        for document in documents:
            for line in document.lines:
                billed[line.charge_code].add(line, direction(document.kind))
        now: dict[str, _Billed] = defaultdict(_Billed)
        for line, event_type in zip(rerated.lines, event_types, strict=True):
            now[line.charge_code].add(line, 1, event_type)
        debit: list[tuple[InvoiceLine, str | None]] = []
        credit: list[tuple[InvoiceLine, str | None]] = []
        # Charges billed but gone from the re-rating (a minimum that usage now fills)
        # are credited whole.
        for code in [*now, *(c for c in billed if c not in now)]:
            is_, was = now.get(code, _Billed()), billed.get(code, _Billed())
            delta, tax = is_.amount - was.amount, is_.tax - was.tax
            if delta == 0 and tax == 0:
                continue
            line = is_.line or was.line
            assert line is not None
            memo_line = InvoiceLine(
                id=new_id("il"),
                charge_code=code,
                kind=line.kind,
                description=f"{line.description} (correction)",
                item_code=line.item_code,
                meter_code=line.meter_code,
                quantity=abs(is_.quantity - was.quantity),
                unit_price=None,  # tiers: the difference has no single unit price
                amount=abs(delta),
                tax=TaxLine(
                    rate=line.tax.rate,
                    amount=abs(tax),
                    jurisdiction=line.tax.jurisdiction,
                    kind=line.tax.kind,
                    note=line.tax.note,
                ),
                event_count=abs(is_.event_count - was.event_count),
            )
            (debit if delta > 0 or (delta == 0 and tax > 0) else credit).append(
                (memo_line, is_.event_type)
            )
        return [
            _memo(kind, original, rerated, lines)
            for kind, lines in (("debit_memo", debit), ("credit_memo", credit))
            if lines
        ]

    async def _number(self, session: AsyncSession, memos) -> None:
        year = utcnow().year
        for i, (memo, event_types) in enumerate(memos):
            series = "DN" if memo.kind == "debit_memo" else "CN"
            [number] = await next_invoice_numbers(session, memo.legal_entity_id, year, 1, series)
            memos[i] = (msgspec.structs.replace(memo, number=number), event_types)

    async def _mark_corrected(
        self, session: AsyncSession, customer_id: str, period: Period, metered: set[str], memos
    ) -> int:
        """The customer's late events of the subscription's metered event types in the
        period: corrected, by the memo carrying their usage line (else the first memo;
        none when nothing billed changed). Late events of other event types stay for the
        customer's other subscriptions. Returns how many events were taken."""
        if not metered:
            return 0
        carrier: dict[str, str | None] = dict.fromkeys(metered, memos[0][0].id if memos else None)
        for memo, event_types in reversed(memos):  # the first memo carrying a type wins
            for event_type in event_types:
                if event_type in carrier:
                    carrier[event_type] = memo.id
        taken = 0
        for event_type, memo_id in carrier.items():
            result = await session.execute(
                sa.update(usage_events)
                .where(
                    usage_events.c.customer_id == customer_id,
                    usage_events.c.event_type == event_type,
                    usage_events.c.adjustment == 1,
                    usage_events.c.timestamp >= period.start,
                    usage_events.c.timestamp < period.end,
                )
                .values(adjustment=2, corrected_by=memo_id)
            )
            taken += result.rowcount or 0
        return taken


def _memo(
    kind: str, original: Invoice, rerated: Invoice, lines: list[tuple[InvoiceLine, str | None]]
) -> tuple[Invoice, list[str | None]]:
    currency = rerated.currency
    subtotal = total((line.amount for line, _ in lines), currency)
    tax_total = total((line.tax.amount for line, _ in lines), currency)
    memo = msgspec.structs.replace(
        original,
        id=new_id("inv"),
        number="",  # given when written
        kind=kind,
        status="finalized",
        corrects_invoice_id=original.id,
        lines=[line for line, _ in lines],
        subtotal=subtotal,
        tax_total=tax_total,
        total=subtotal + tax_total,
        run_id=rerated.run_id,
        correlation_id=correlation.current(),
        erp_document_id=None,
        amount_paid=Decimal(0),
        void_reason=None,
        created_at=utcnow(),
    )
    return memo, [event_type for _, event_type in lines]
