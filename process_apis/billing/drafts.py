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

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical.model import Invoice
from canonical.time import Period, utcnow
from process_apis.audit import append
from process_apis.invoices.store import write_lines
from process_apis.tables import billing_runs, invoice_lines, invoices, postings

__all__ = ["DraftRefresher", "finalize_due", "grace_over", "status_for"]

_DRAFT_KEY = ("subscription_id", "period_start", "legal_entity_id", "currency")


def grace_over(period: Period, grace: timedelta, now: datetime | None = None) -> bool:
    return (now or utcnow()) >= period.end + grace


def status_for(period: Period, grace: timedelta) -> str:
    """The status a run writes new invoices of ``period`` in: drafts only while a grace
    window is open (without one, even an open period is invoiced final)."""
    return "draft" if grace and not grace_over(period, grace) else "finalized"


def _same(old_lines: list, invoice: Invoice, old) -> bool:
    new = [(ln.charge_code, ln.quantity, ln.amount, ln.tax.amount) for ln in invoice.lines]
    was = [(r.charge_code, r.quantity, r.amount, r.tax_amount) for r in old_lines]
    return new == was and (old.subtotal, old.tax_total) == (invoice.subtotal, invoice.tax_total)


class DraftRefresher:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def refresh(self, drafts: list[tuple[Invoice, list[str | None]]], finalize: bool) -> int:
        """Bring a subscription's drafts in line with ``drafts`` (its new rating, one per
        currency, not numbered) and finalize them if ``finalize``; how many documents
        were updated or finalized. A currency the drafts lacked is left to the writer."""
        changed = 0
        async with self._sessions.begin() as session:
            for invoice, event_types in drafts:
                old = (
                    await session.execute(
                        sa.select(invoices).where(
                            *(invoices.c[k] == getattr(invoice, k) for k in _DRAFT_KEY),
                            invoices.c.kind == "invoice",
                        )
                    )
                ).first()
                if old is None or old.status != "draft":
                    continue
                changed += await self._update(session, old, invoice, event_types, finalize)
        return changed

    async def _update(
        self,
        session: AsyncSession,
        old,
        invoice: Invoice,
        event_types: list[str | None],
        finalize: bool,
    ) -> int:
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
        values: dict = {}
        if not same:
            await session.execute(
                sa.delete(invoice_lines).where(invoice_lines.c.invoice_id == old.id)
            )
            kept = msgspec.structs.replace(invoice, id=old.id, number=old.number)
            await write_lines(session, [(kept, event_types)])
            values |= {
                "subtotal": invoice.subtotal,
                "tax_total": invoice.tax_total,
                "total": invoice.total,
            }
        if finalize:
            values |= {"status": "finalized", "finalized_at": now}
        moved = await session.execute(
            sa.update(invoices)
            .where(invoices.c.id == old.id, invoices.c.status == "draft")
            .values(**values)
        )
        if moved.rowcount != 1:
            return 0
        if not same:
            await append(
                session,
                action="invoice.draft_updated",
                subject_type="invoice",
                subject_id=old.id,
                data={"number": old.number, "was": str(old.total), "total": str(invoice.total)},
            )
        if finalize:
            await session.execute(
                postings.insert().values(
                    invoice_id=old.id,
                    status="pending",
                    attempts=0,
                    correlation_id=old.correlation_id,
                    updated_at=now,
                )
            )
            await append(
                session,
                action="invoice.finalized",
                subject_type="invoice",
                subject_id=old.id,
                data={"number": old.number, "total": str(invoice.total)},
            )
        return 1


async def finalize_due(sessions: async_sessionmaker, grace: timedelta) -> list[Period]:
    """Periods whose grace window is over and that still hold drafts, with no run of the
    period waiting or running: a run finalizes them."""
    async with sessions() as session:
        starts = (
            await session.execute(
                sa.select(invoices.c.period_start)
                .where(invoices.c.status == "draft", invoices.c.kind == "invoice")
                .distinct()
            )
        ).scalars()
        periods = [Period.parse(f"{s.year:04d}-{s.month:02d}") for s in starts]
        busy = set(
            (
                await session.execute(
                    sa.select(billing_runs.c.period).where(
                        billing_runs.c.status.in_(("queued", "running"))
                    )
                )
            ).scalars()
        )
    return [p for p in periods if grace_over(p, grace) and str(p) not in busy]
