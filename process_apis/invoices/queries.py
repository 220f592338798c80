"""Read-only document queries the Experience APIs need beyond ``InvoiceStore``: whose a
document is, and the memos correcting it."""

from __future__ import annotations

from collections.abc import Collection

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import Invoice
from process_apis.invoices.store import InvoiceStore
from process_apis.tables import invoices

__all__ = ["DocumentOwner", "DocumentQueries"]


class DocumentOwner(msgspec.Struct, frozen=True):
    customer_id: str  # never changes
    status: str


class DocumentQueries:
    def __init__(self, sessions: async_sessionmaker, store: InvoiceStore) -> None:
        self._sessions = sessions
        self._store = store

    async def owner(self, invoice_id: str) -> DocumentOwner | None:
        """Whose a document is and its status; None: no such document."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(invoices.c.customer_id, invoices.c.status).where(
                        invoices.c.id == invoice_id
                    )
                )
            ).first()
        return None if row is None else DocumentOwner(row.customer_id, row.status)

    async def corrections(self, invoice_id: str, statuses: Collection[str]) -> list[Invoice]:
        """The memos correcting a document (a void's reversal, late-usage debit and
        credit memos) in one of ``statuses``, oldest first."""
        async with self._sessions() as session:
            ids = (
                await session.execute(
                    sa.select(invoices.c.id).where(
                        invoices.c.corrects_invoice_id == invoice_id,
                        invoices.c.status.in_(list(statuses)),
                    )
                )
            ).scalars()
            wanted = list(ids)
        return await self._store.many(wanted)  # in id order: ids sort by creation
