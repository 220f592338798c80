"""Telling a void's reversal from a late-usage correction.

Both are memos pointing at the invoice they correct (``corrects_invoice_id``), and both
may be credit memos of an invoice that is void by now (an invoice corrected, then
voided). They bill different events: a reversal (``InvoiceLifecycle._reversal``) is the
voided invoice issued again as a credit memo, so its lines bill that invoice's events; a
correction's lines bill the late events it marked ``corrected_by`` itself
(process_apis/billing/corrections.py).

The documents tell them apart without a column of their own: a reversal is a copy of its
invoice and keeps the invoice's ``run_id``, while a correction carries the run that
issued it, and a run never corrects an invoice it wrote itself (it skips the
subscriptions it billed: process_apis/billing/runs.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from process_apis.tables import invoices

__all__ = ["reversed_invoice"]


async def reversed_invoice(session: AsyncSession, document: Any) -> Any | None:
    """The row of the void invoice ``document`` reverses; None when ``document`` is not a
    void's reversal. ``document``: a row with the document's ``kind``,
    ``corrects_invoice_id`` and ``run_id``."""
    if document.kind != "credit_memo" or document.corrects_invoice_id is None:
        return None
    corrected = (
        await session.execute(
            sa.select(invoices).where(invoices.c.id == document.corrects_invoice_id)
        )
    ).first()
    if corrected is None or corrected.status != "void" or corrected.run_id != document.run_id:
        return None
    return corrected
