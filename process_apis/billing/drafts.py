"""The grace window: for a while after a period ends, its invoices stay drafts that every
run of the period re-rates, so that late events update the draft instead of waiting for
a memo; the first run after the window finalizes them.

- A draft is numbered when first written (its number is kept whatever happens to it) but
  has no outbox row: nothing reaches the ERP before finalization.
- Ingest treats a period whose invoices are drafts as open: its late events are ordinary
  events, billed by the refreshed draft, not flagged for a memo.
- ``refresh`` replaces a draft's lines and totals by the new rating when they differ
  (audited ``invoice.draft_updated``), and finalizes it when the window is over (outbox
  row, ``invoice.finalized``), in one transaction per subscription. Only rows still
  drafts are touched, so a draft finalized or voided meanwhile is left as it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.model import Invoice
from canonical.time import Period, utcnow
from process_apis.audit import append
from process_apis.exceptions.service import raise_exceptions
from process_apis.invoices.lifecycle import DRAFT_NOT_FINALIZED, finalize_draft
from process_apis.invoices.store import write_lines
from process_apis.tables import billing_runs, invoice_lines, invoices

__all__ = ["DraftRefresher", "finalize_due", "grace_over", "raise_leftovers", "status_for"]

# An invoice ready to write, but for its number, and the event type behind each line.
Draft = tuple[Invoice, list[str | None]]


def grace_over(period: Period, grace: timedelta, now: datetime | None = None) -> bool:
    return (now or utcnow()) >= period.end + grace


def status_for(period: Period, grace: timedelta) -> str:
    """The status a run writes new invoices of ``period`` in: drafts only while a grace
    window is open (without one, even an open period is invoiced final)."""
    return "draft" if grace and not grace_over(period, grace) else "finalized"


def _same(old_lines: list, invoice: Invoice | None, old) -> bool:
    lines = invoice.lines if invoice is not None else []
    new = [
        (
            ln.charge_code,
            ln.quantity,
            ln.amount,
            ln.tax.amount,
            ln.event_count,
            ln.service_start,
            ln.service_end,
        )
        for ln in lines
    ]
    was = [
        (
            r.charge_code,
            r.quantity,
            r.amount,
            r.tax_amount,
            r.event_count,
            r.service_start,
            r.service_end,
        )
        for r in old_lines
    ]
    totals = (invoice.subtotal, invoice.tax_total) if invoice is not None else (0, 0)
    return new == was and (old.subtotal, old.tax_total) == totals


class DraftRefresher:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def refresh(
        self, subscription_id: str, period: Period, drafts: list[Draft], finalize: bool
    ) -> tuple[int, list[Draft]]:
        """Bring a subscription's drafts for ``period`` in line with ``drafts`` (its new
        rating, one per currency, not numbered) and finalize them if ``finalize``: how
        many documents were updated, finalized or voided, and the drafts that matched no
        draft row (a currency the rating gained), left to the writer.

        A draft whose currency is no longer rated is emptied while the window is open
        (the currency may come back: the unique index allows one document per currency)
        and voided when it closes. The rows are locked before their lines are read, so a
        concurrent refresh waits and then sees this one's lines, or a row no longer a
        draft."""
        changed = 0
        unmatched: list[Draft] = []
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    sa.select(invoices)
                    .where(
                        invoices.c.subscription_id == subscription_id,
                        invoices.c.period_start == period.first_day,
                        invoices.c.kind == "invoice",
                        invoices.c.status == "draft",
                    )
                    .order_by(invoices.c.id)
                    .with_for_update()
                )
            ).all()
            by_key = {(r.legal_entity_id, r.currency): r for r in rows}
            for invoice, event_types in drafts:
                old = by_key.pop((invoice.legal_entity_id, invoice.currency), None)
                if old is None:
                    unmatched.append((invoice, event_types))
                    continue
                changed += await self._update(session, old, invoice, event_types, finalize)
            for old in by_key.values():
                if finalize:
                    changed += await self._void(session, old)
                else:
                    changed += await self._update(session, old, None, [], finalize=False)
        return changed, unmatched

    async def _update(
        self,
        session: AsyncSession,
        old,
        invoice: Invoice | None,
        event_types: list[str | None],
        finalize: bool,
    ) -> int:
        """Replace a locked draft's lines and totals by ``invoice`` (``None``: none) and
        finalize it if ``finalize``."""
        old_lines = (
            await session.execute(
                sa.select(invoice_lines)
                .where(invoice_lines.c.invoice_id == old.id)
                .order_by(invoice_lines.c.position)
            )
        ).all()
        same = _same(old_lines, invoice, old)
        if same and not finalize:
            return 0
        now = utcnow()
        new_total = invoice.total if invoice is not None else Decimal(0)
        if not same:
            # The guard comes first: nothing is written to a row no longer a draft.
            moved = await session.execute(
                sa.update(invoices)
                .where(invoices.c.id == old.id, invoices.c.status == "draft")
                .values(
                    subtotal=invoice.subtotal if invoice is not None else Decimal(0),
                    tax_total=invoice.tax_total if invoice is not None else Decimal(0),
                    total=new_total,
                )
            )
            if moved.rowcount != 1:
                return 0
            await session.execute(
                sa.delete(invoice_lines).where(invoice_lines.c.invoice_id == old.id)
            )
            if invoice is not None:
                kept = msgspec.structs.replace(invoice, id=old.id, number=old.number)
                await write_lines(session, [(kept, event_types)])
            await append(
                session,
                action="invoice.draft_updated",
                subject_type="invoice",
                subject_id=old.id,
                data={"number": old.number, "was": str(old.total), "total": str(new_total)},
            )
        if finalize and not await finalize_draft(session, old, now, total=new_total):
            return 0
        return 1

    async def _void(self, session: AsyncSession, old) -> int:
        """Void a locked draft no longer rated when its window closes (its number stays
        used, so the series has no gap)."""
        reason = "no longer billed when the grace window closed"
        moved = await session.execute(
            sa.update(invoices)
            .where(invoices.c.id == old.id, invoices.c.status == "draft")
            .values(status="void", voided_at=utcnow(), void_reason=reason)
        )
        if moved.rowcount != 1:
            return 0
        await append(
            session,
            action="invoice.voided",
            subject_type="invoice",
            subject_id=old.id,
            data={"number": old.number, "total": str(old.total), "reason": reason},
        )
        return 1


async def finalize_due(sessions: async_sessionmaker, grace: timedelta) -> list[Period]:
    """Periods whose grace window is over and that still hold drafts, with no run of the
    period waiting or running and none completed since the window closed: a run
    finalizes them. What that run leaves a draft, no run can finalize (``raise_leftovers``
    tells finance); starting another each round would change nothing."""
    async with sessions() as session:
        starts = (
            await session.execute(
                sa.select(invoices.c.period_start)
                .where(invoices.c.status == "draft", invoices.c.kind == "invoice")
                .distinct()
            )
        ).scalars()
        periods = [Period.parse(f"{s.year:04d}-{s.month:02d}") for s in starts]
        periods = [p for p in periods if grace_over(p, grace)]
        if not periods:
            return []
        runs = (
            await session.execute(
                sa.select(
                    billing_runs.c.period,
                    billing_runs.c.status,
                    billing_runs.c.customer_ids,
                    billing_runs.c.created_at,
                ).where(billing_runs.c.period.in_([str(p) for p in periods]))
            )
        ).all()
    done: set[str] = set()
    for run in runs:
        busy = run.status in ("queued", "running")
        # A run of the whole period created after the window closed finalized it.
        final = (
            run.status == "completed"
            and run.customer_ids is None
            and run.created_at >= Period.parse(run.period).end + grace
        )
        if busy or final:
            done.add(run.period)
    return [p for p in periods if str(p) not in done]


async def raise_leftovers(session: AsyncSession, period: Period) -> int:
    """Raise a ``draft_not_finalized`` exception for each draft of ``period`` that the
    run finalizing it left a draft (its subscription out of scope, held, or billed in
    another currency): finance finalizes or voids it by hand. How many."""
    left = (
        await session.execute(
            sa.select(invoices.c.id, invoices.c.number, invoices.c.subscription_id).where(
                invoices.c.period_start == period.first_day,
                invoices.c.kind == "invoice",
                invoices.c.status == "draft",
            )
        )
    ).all()
    await raise_exceptions(
        session,
        DRAFT_NOT_FINALIZED,
        [
            (
                r.id,
                f"draft {r.number} of {period} was not finalized when its grace window "
                "closed; finalize or void it",
                {"invoice_id": r.id, "subscription_id": r.subscription_id, "period": str(period)},
                1,
            )
            for r in left
        ],
    )
    return len(left)
