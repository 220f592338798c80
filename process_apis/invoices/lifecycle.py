"""The invoice lifecycle: which moves a document may make, and what each move does.

    draft ──finalize──► finalized ──(ERP posts)──► posted ──(payments)──► partially_paid ──► paid
      │                     │                        │
      └──────void───────────┴────────void────────────┘

- ``finalize``: a draft gets its number's outbox row and is posted by the outbox worker.
- ``void`` of a draft, or of a finalized document the ERP has not taken yet: the outbox
  row is cancelled, nothing reaches the ERP. A document the outbox worker holds right
  now cannot be voided until it lets go (409, retry).
- ``void`` of a posted document: a credit memo reversing it in full is issued (its own
  number in the ``CN`` series, ``corrects_invoice_id`` pointing at it) and posted to the
  ERP like an invoice, on the day of the void, so a closed period is never reopened.
- Paid or partly paid documents are not voided (that is a refund, outside Meterline).
- Payments move posted documents to ``partially_paid`` and ``paid``
  (process_apis/posting/payments.py).

Every other move is refused with 409 ``invalid_transition``. Every move is audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import errors
from canonical.ids import new_id
from canonical.model import Invoice
from canonical.time import utcnow
from process_apis.audit import append
from process_apis.exceptions.service import resolve_exceptions
from process_apis.invoices.store import (
    InvoiceStore,
    next_invoice_number,
    outbox_row,
    write_invoice,
)
from process_apis.tables import invoice_lines, invoices, postings

__all__ = ["ALLOWED", "DRAFT_NOT_FINALIZED", "InvoiceLifecycle", "finalize_draft"]

# The exception raised for a draft that the run finalizing its period left a draft.
DRAFT_NOT_FINALIZED = "draft_not_finalized"

# status -> the statuses a document may move to from it.
ALLOWED: dict[str, frozenset[str]] = {
    "draft": frozenset({"finalized", "void"}),
    "finalized": frozenset({"posted", "void"}),
    "posted": frozenset({"partially_paid", "paid", "void"}),
    "partially_paid": frozenset({"paid"}),
    "paid": frozenset(),
    "void": frozenset(),
}


def check_move(invoice: Invoice, to: str) -> None:
    if to not in ALLOWED[invoice.status]:
        raise errors.InvalidTransition(
            f"{invoice.kind.replace('_', ' ')} {invoice.number} is {invoice.status}; it cannot "
            f"become {to} (allowed: {', '.join(sorted(ALLOWED[invoice.status])) or 'none'})",
            status=invoice.status,
        )


async def finalize_draft(
    session: AsyncSession, draft, now: datetime, *, total: Decimal | None = None
) -> bool:
    """Finalize ``draft`` (a row or an ``Invoice``) in ``session``'s transaction: status,
    outbox row, audit; whether it was still a draft (else nothing is written).
    ``total`` is its total when the same transaction has just changed it."""
    moved = await session.execute(
        sa.update(invoices)
        .where(invoices.c.id == draft.id, invoices.c.status == "draft")
        .values(status="finalized", finalized_at=now)
    )
    if moved.rowcount != 1:
        return False
    await session.execute(postings.insert().values(outbox_row(draft.id, draft.correlation_id, now)))
    await append(
        session,
        action=f"{draft.kind}.finalized",
        subject_type="invoice",
        subject_id=draft.id,
        data={"number": draft.number, "total": str(draft.total if total is None else total)},
    )
    # A draft its period's run left behind, now finalized by hand: settled.
    await resolve_exceptions(session, DRAFT_NOT_FINALIZED, {draft.id}, resolution="finalized")
    return True


class InvoiceLifecycle:
    def __init__(
        self, sessions: async_sessionmaker, *, wake_outbox: Callable[[], None] = lambda: None
    ) -> None:
        self._sessions = sessions
        self._invoices = InvoiceStore(sessions)
        # Where this process drains the outbox, it posts a new document at once.
        self._wake_outbox = wake_outbox

    async def finalize(self, invoice_id: str) -> Invoice:
        invoice = await self._invoices.get(invoice_id)
        check_move(invoice, "finalized")
        now = utcnow()
        async with self._sessions.begin() as session:
            _raced(await finalize_draft(session, invoice, now), invoice)
        self._wake_outbox()
        return await self._invoices.get(invoice_id)

    async def void(self, invoice_id: str, reason: str) -> tuple[Invoice, Invoice | None]:
        """Void a document; returns it and, when it was posted, its reversing memo."""
        invoice = await self._invoices.get(invoice_id)
        check_move(invoice, "void")
        if invoice.kind != "invoice" and invoice.status == "posted":
            raise errors.InvalidTransition(
                f"memo {invoice.number} is posted; correct it with another memo instead",
                status=invoice.status,
            )
        memo = None
        async with self._sessions.begin() as session:
            if invoice.status == "posted":
                memo = await self._reversal(session, invoice, reason)
            else:
                await self._cancel_posting(session, invoice)
            moved = await session.execute(
                sa.update(invoices)
                .where(invoices.c.id == invoice_id, invoices.c.status == invoice.status)
                .values(status="void", voided_at=utcnow(), void_reason=reason)
            )
            _raced(moved.rowcount == 1, invoice)
            await _audit(session, invoice, "voided", {"reason": reason})
            await resolve_exceptions(
                session, DRAFT_NOT_FINALIZED, {invoice.id}, resolution="voided"
            )
        if memo is not None:
            self._wake_outbox()
        voided = await self._invoices.get(invoice_id)
        return voided, (await self._invoices.get(memo.id)) if memo else None

    async def _cancel_posting(self, session: AsyncSession, invoice: Invoice) -> None:
        now = utcnow()
        cancelled = await session.execute(
            sa.update(postings)
            .where(
                postings.c.invoice_id == invoice.id,
                postings.c.status.in_(("pending", "failed")),
                sa.or_(postings.c.lease_until.is_(None), postings.c.lease_until < now),
            )
            .values(status="cancelled", updated_at=now, last_error="voided before posting")
        )
        if invoice.status == "finalized" and cancelled.rowcount != 1:
            raise errors.Conflict(
                f"invoice {invoice.number} is being posted to the ERP right now; void it once "
                "it is posted (a credit memo then reverses it)",
                status=invoice.status,
            )
        # Nothing is left to post: a failed posting's exception is settled with it.
        await resolve_exceptions(session, "posting_failed", {invoice.id}, resolution="voided")

    async def _reversal(self, session: AsyncSession, invoice: Invoice, reason: str) -> Invoice:
        """A credit memo for the whole document, lines and tax as they were."""
        now = utcnow()
        memo = msgspec.structs.replace(
            invoice,
            id=new_id("inv"),
            number=await next_invoice_number(session, invoice.legal_entity_id, now.year, "CN"),
            kind="credit_memo",
            status="finalized",
            corrects_invoice_id=invoice.id,
            lines=[msgspec.structs.replace(line, id=new_id("il")) for line in invoice.lines],
            erp_document_id=None,
            amount_paid=Decimal(0),
            void_reason=None,
            created_at=now,
        )
        event_types = (
            await session.execute(
                sa.select(invoice_lines.c.event_type)
                .where(invoice_lines.c.invoice_id == invoice.id)
                .order_by(invoice_lines.c.position)
            )
        ).scalars()
        await write_invoice(session, memo, list(event_types))
        await _audit(session, memo, "issued", {"reverses": invoice.id, "reason": reason})
        return memo


def _raced(moved: bool, invoice: Invoice) -> None:
    if not moved:  # another request moved it between the read and the update
        raise errors.Conflict(f"{invoice.number} changed meanwhile; read it again and retry")


async def _audit(session: AsyncSession, invoice: Invoice, what: str, data=None) -> None:
    await append(
        session,
        action=f"{invoice.kind}.{what}",
        subject_type="invoice",
        subject_id=invoice.id,
        data={"number": invoice.number, "total": str(invoice.total), **(data or {})},
    )
