"""What every Experience API shows of an issued document, whatever its audience."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from process_apis.invoices.queries import IssuedDocument
from process_apis.receivables import amount_due

__all__ = ["document_fields", "percent"]


def document_fields(document: IssuedDocument) -> dict[str, Any]:
    """The fields a document summary carries in every audience's view, by name: each
    view spreads them into its own struct and adds what its audience reads besides."""
    invoice = document.invoice
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
        # Finalization, not creation: a grace-window draft is created days before.
        "issued_at": document.issued_at,
    }


def percent(rate: Decimal) -> Decimal:
    """A tax rate as the percentage a document prints, in plain notation without trailing
    zeros: 0.20 -> 20, 0.055 -> 5.5, 0 -> 0 (``normalize()`` alone makes 20.00 2E+1)."""
    value = (rate * 100).normalize()
    exponent = value.as_tuple().exponent
    return value.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else value
