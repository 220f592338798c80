"""What every Experience API shows of an issued document, whatever its audience."""

from __future__ import annotations

from typing import Any

from canonical.model import Invoice
from process_apis.receivables import amount_due

__all__ = ["document_fields"]


def document_fields(invoice: Invoice) -> dict[str, Any]:
    """The fields a document summary carries in every audience's view, by name: each
    view spreads them into its own struct and adds what its audience reads besides."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "kind": invoice.kind,
        "status": invoice.status,
        "corrects_invoice_id": invoice.corrects_invoice_id,
        "period": invoice.period_start.strftime("%Y-%m"),
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "tax_total": invoice.tax_total,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "amount_due": amount_due(invoice),
        "issued_at": invoice.created_at,
    }
