"""Read-only document queries the Experience APIs need beyond ``InvoiceStore``: which
documents are issued, whose an issued document is, a customer's issued documents and the
memos correcting one.

A document is issued when it is finalized and stays issued whatever it becomes next
(posted, paid, void). Its status alone does not tell: a draft may be voided, and that
void was never issued, so no customer or partner ever sees it. ``finalized_at`` does:
every finalization sets it (a run's invoice and every memo are written finalized; a
grace-window draft and a draft finalized by hand set it when they move), and nothing
clears it. It is also when the document was issued, which for a grace-window invoice is
days after its draft was created."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Literal, get_args

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Invoice
from process_apis.invoices.store import InvoiceStore
from process_apis.tables import invoices

__all__ = [
    "ISSUED",
    "DocumentOwner",
    "DocumentQueries",
    "IssuedDocument",
    "IssuedStatus",
    "issued",
]

# The statuses an issued document may be in; drafts are work in progress.
IssuedStatus = Literal["finalized", "posted", "partially_paid", "paid", "void"]
ISSUED: tuple[IssuedStatus, ...] = get_args(IssuedStatus)


def issued(statuses: Collection[str] = ISSUED) -> sa.ColumnElement[bool]:
    """The documents issued and now in one of ``statuses``."""
    return sa.and_(invoices.c.status.in_(list(statuses)), invoices.c.finalized_at.is_not(None))


class IssuedDocument(msgspec.Struct, frozen=True, kw_only=True):
    invoice: Invoice
    issued_at: datetime  # when it was finalized


class DocumentOwner(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str  # never changes
    issued_at: datetime


class DocumentQueries:
    def __init__(self, sessions: async_sessionmaker, store: InvoiceStore) -> None:
        self._sessions = sessions
        self._store = store

    async def owner(self, invoice_id: str) -> DocumentOwner | None:
        """Whose an issued document is; None: no such issued document (not a document,
        or never issued)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(invoices.c.customer_id, invoices.c.finalized_at).where(
                        invoices.c.id == invoice_id, issued()
                    )
                )
            ).first()
        if row is None:
            return None
        return DocumentOwner(customer_id=row.customer_id, issued_at=row.finalized_at)

    async def customer_documents(
        self,
        customer_id: str,
        *,
        statuses: Collection[str] = ISSUED,
        period_start: date | None = None,
        limit: int,
        starting_after: str | None,
    ) -> tuple[list[IssuedDocument], bool]:
        """A page of a customer's issued documents in one of ``statuses``, in id order,
        and whether more follow."""
        query = (
            sa.select(invoices.c.id, invoices.c.finalized_at)
            .where(invoices.c.customer_id == customer_id, issued(statuses))
            .order_by(invoices.c.id)
            .limit(limit + 1)
        )
        if period_start is not None:
            query = query.where(invoices.c.period_start == period_start)
        if starting_after:
            query = query.where(invoices.c.id > starting_after)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return await self._documents(rows[:limit]), len(rows) > limit

    async def corrections(self, invoice_id: str) -> list[IssuedDocument]:
        """The issued memos correcting a document (a void's reversal, late-usage debit and
        credit memos), oldest first (ids sort by creation)."""
        query = (
            sa.select(invoices.c.id, invoices.c.finalized_at)
            .where(invoices.c.corrects_invoice_id == invoice_id, issued())
            .order_by(invoices.c.id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return await self._documents(rows)

    async def _documents(self, rows: Sequence[sa.Row]) -> list[IssuedDocument]:
        """The documents of ``(id, finalized_at)`` rows, in the rows' order."""
        found = {i.id: i for i in await self._store.many([row.id for row in rows])}
        return [IssuedDocument(invoice=found[row.id], issued_at=row.finalized_at) for row in rows]
