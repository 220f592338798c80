"""Which documents count, and in which direction: one rule for everything that adds
documents up (corrections, reconciliation, receivables, usage summaries, the finance
figures, revenue schedules)."""

from __future__ import annotations

import sqlalchemy as sa

from process_apis.tables import invoices

__all__ = ["counted", "direction", "standing"]

# The direction in which a document's amounts and quantities count (kind -> sign).
_DIRECTIONS = {"invoice": 1, "debit_memo": 1, "credit_memo": -1}


def direction(kind: str) -> int:
    """+1 or -1: how a document of ``kind`` moves what is billed."""
    return _DIRECTIONS.get(kind, 1)


def standing():
    """The documents that count: every one but a void that never reached the ERP (voided
    as a draft or finalized: as if never issued). A posted document that was voided
    stays in the ERP and counts, as does the credit memo reversing it, which cancels its
    quantities (process_apis/invoices/lifecycle.py)."""
    return sa.or_(invoices.c.status != "void", invoices.c.erp_document_id.is_not(None))


def counted():
    """Standing documents past their draft: those the ERP holds or will hold (a draft of
    a grace window is still re-rated, so nothing of it is due yet)."""
    return sa.and_(standing(), invoices.c.status != "draft")
