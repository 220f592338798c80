"""Documents and ledger: each Meterline document of the period against the document the
ERP holds for it, each such document's journal, and each ledger it books into.

The ERP side is read only through the ERP port (never its tables), as a remote ERP would
be: the customer's documents are listed (one paged call per customer, which also shows
ERP documents no Meterline document explains), and a document the listing does not hold
under that customer is looked up by ``external_ref`` (= the Meterline document id).

What is a variance and what is not:

- a document still in the outbox (``pending``) or refused for good (``failed``, which
  raised its own ``posting_failed`` exception) is listed with that status, not as a
  variance: the ERP is not expected to hold it yet;
- a posted document the ERP does not hold is ``document_missing``;
- a held document whose totals, kind, customer, legal entity or currency differ from
  Meterline's, or that is not the document the outbox recorded, is ``document_mismatch``
  (its journal problems, if any, are in the same detail);
- a held document whose journal does not balance, or does not book its total, is
  ``journal_unbalanced``; so is a trial balance (per legal entity and currency) that
  does not sum to zero;
- an ERP document of the period's customers, posted in the period, whose external_ref is
  no standing Meterline document (none, or one voided before posting: the ERP booked
  what Meterline cancelled), is ``unexpected_document``.

A voided invoice that had been posted stays a document of the period (the ERP holds it)
next to the credit memo reversing it; one voided before posting is not reconciled."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical.model import ErpDocument, decimal_text
from canonical.money import ZERO
from canonical.time import Period
from process_apis.invoices.counting import counted, standing
from process_apis.reconciliation.report import (
    ReconciledDocument,
    ReconciledLedger,
    ReconciliationVariance,
)
from process_apis.tables import invoices, postings
from system_apis.chunks import sorted_chunks
from system_apis.erp.port import ErpPort

__all__ = ["DocumentCheck", "DocumentResult"]

_PAGE = 100


class DocumentResult(msgspec.Struct):
    rows: list[ReconciledDocument]
    ledgers: list[ReconciledLedger]
    variances: list[ReconciliationVariance]


class DocumentCheck:
    def __init__(self, sessions: async_sessionmaker, erp: ErpPort) -> None:
        self._sessions = sessions
        self._erp = erp

    async def run(self, period: Period) -> DocumentResult:
        ours = await self._documents(period)
        held: dict[str, ErpDocument] = {}
        in_period: list[ErpDocument] = []
        for customer_id in sorted({row.customer_id for row in ours}):
            for document in await self._customer_documents(customer_id):
                held.setdefault(document.external_ref, document)
                if period.first_day <= document.posting_date < period.end.date():
                    in_period.append(document)
        rows, variances = [], []
        for row in ours:
            document_row, variance = await self._check(period, row, held)
            rows.append(document_row)
            if variance is not None:
                variances.append(variance)
        variances += await self._unexpected(period, in_period)
        ledgers = await self._ledgers({(row.legal_entity_id, row.currency) for row in ours})
        variances += [_ledger_variance(period, ledger) for ledger in ledgers if not ledger.balanced]
        return DocumentResult(rows, ledgers, variances)

    async def _documents(self, period: Period):
        """The period's standing documents with their outbox status, by id. Drafts (a
        grace window) are not issued: nothing of them is due in the ERP yet."""
        query = (
            sa.select(
                invoices,
                postings.c.status.label("posting_status"),
                postings.c.erp_document_id.label("posted_document_id"),
            )
            .outerjoin(postings, postings.c.invoice_id == invoices.c.id)
            .where(
                invoices.c.period_start == period.first_day,
                counted(),
            )
            .order_by(invoices.c.id)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def _customer_documents(self, customer_id: str) -> list[ErpDocument]:
        found: list[ErpDocument] = []
        after = None
        while True:
            page, more = await self._erp.list_documents(
                limit=_PAGE, starting_after=after, customer_id=customer_id
            )
            found += page
            if not more or not page:
                return found
            after = page[-1].id

    async def _check(self, period: Period, row, held: dict[str, ErpDocument]):
        status = row.posting_status or ("posted" if row.erp_document_id else "pending")
        if status not in ("posted", "failed"):
            status = "pending"  # waiting in the outbox (or due for a retry)
        document = held.get(row.id)
        if document is None and status == "posted":
            document = await self._erp.find_document(row.id)  # held under another customer?
        out = ReconciledDocument(
            invoice_id=row.id,
            number=row.number,
            kind=row.kind,
            customer_id=row.customer_id,
            legal_entity_id=row.legal_entity_id,
            currency=row.currency,
            status="reconciled" if status == "posted" else status,
            total=row.total,
        )
        if document is not None:
            out.erp_document_id = document.id
            out.erp_total = document.total
            out.difference = row.total - document.total
            out.journal_balanced = _debits(document) == _credits(document)
        if status != "posted":
            return out, None  # pending or failed: not expected in the ERP yet
        if document is None:
            out.status = "variance"
            return out, _document_variance(
                period, row, "document_missing", ["the ERP holds no document for it"], None
            )
        problems = _differences(row, document)
        journal = _journal_problems(document)
        if not problems and not journal:
            return out, None
        out.status = "variance"
        kind = "document_mismatch" if problems else "journal_unbalanced"
        return out, _document_variance(period, row, kind, problems + journal, document)

    async def _unexpected(
        self, period: Period, in_period: list[ErpDocument]
    ) -> list[ReconciliationVariance]:
        refs = {d.external_ref for d in in_period}
        if not refs:
            return []
        known: set[str] = set()
        async with self._sessions() as session:
            for chunk in sorted_chunks(refs, 1000):
                found = await session.execute(
                    sa.select(invoices.c.id).where(invoices.c.id.in_(chunk), standing())
                )
                known.update(found.scalars())
        return [
            ReconciliationVariance(
                kind="unexpected_document",
                subject=f"{period}:{d.id}",
                detail=(
                    f"{period}: the ERP holds {d.kind} {d.id} of customer {d.customer_id} "
                    f"({decimal_text(d.total)} {d.currency}, external_ref {d.external_ref}) "
                    "that no standing Meterline document explains (none has that id, or "
                    "it was voided before it was posted)"
                ),
                context={
                    "period": str(period),
                    "erp_document_id": d.id,
                    "external_ref": d.external_ref,
                    "customer_id": d.customer_id,
                    "erp_total": decimal_text(d.total),
                    "currency": d.currency,
                },
            )
            for d in sorted(in_period, key=lambda d: d.id)
            if d.external_ref not in known
        ]

    async def _ledgers(self, scopes: set[tuple[str, str]]) -> list[ReconciledLedger]:
        rows = []
        for legal_entity_id, currency in sorted(scopes):
            balances = await self._erp.account_balances(legal_entity_id, currency)
            imbalance = sum(balances.values(), ZERO)
            rows.append(
                ReconciledLedger(
                    legal_entity_id=legal_entity_id,
                    currency=currency,
                    imbalance=imbalance,
                    balanced=imbalance == 0,
                )
            )
        return rows


def _debits(document: ErpDocument) -> Decimal:
    return sum((line.debit for line in document.journal.lines), ZERO)


def _credits(document: ErpDocument) -> Decimal:
    return sum((line.credit for line in document.journal.lines), ZERO)


def _differences(row, document: ErpDocument) -> list[str]:
    """How the ERP's document differs from Meterline's."""
    problems = []
    if row.posted_document_id and row.posted_document_id != document.id:
        problems.append(f"the outbox recorded ERP document {row.posted_document_id}")
    for field, ours, theirs in (
        ("kind", row.kind, document.kind),
        ("customer", row.customer_id, document.customer_id),
        ("legal entity", row.legal_entity_id, document.legal_entity_id),
        ("currency", row.currency, document.currency),
    ):
        if ours != theirs:
            problems.append(f"{field} {theirs} in the ERP, {ours} in Meterline")
    for field, ours, theirs in (
        ("net total", row.subtotal, document.net_total),
        ("tax total", row.tax_total, document.tax_total),
        ("total", row.total, document.total),
    ):
        if ours != theirs:
            problems.append(
                f"{field} {decimal_text(theirs)} in the ERP, {decimal_text(ours)} in Meterline"
            )
    return problems


def _journal_problems(document: ErpDocument) -> list[str]:
    """A document's journal must balance and book its total (AR on one side)."""
    debits, credits = _debits(document), _credits(document)
    problems = []
    if debits != credits:
        problems.append(
            f"its journal does not balance: debits {decimal_text(debits)}, "
            f"credits {decimal_text(credits)}"
        )
    elif debits != document.total:
        problems.append(
            f"its journal books {decimal_text(debits)}, not its total "
            f"{decimal_text(document.total)}"
        )
    return problems


def _document_variance(
    period: Period, row, kind, problems: list[str], document
) -> ReconciliationVariance:
    erp_total = decimal_text(document.total) if document is not None else None
    return ReconciliationVariance(
        kind=kind,
        subject=f"{period}:{row.id}",
        detail=f"{period}: {row.kind} {row.number} ({row.id}): " + "; ".join(problems),
        context={
            "period": str(period),
            "invoice_id": row.id,
            "invoice_number": row.number,
            "document_kind": row.kind,
            "customer_id": row.customer_id,
            "legal_entity_id": row.legal_entity_id,
            "currency": row.currency,
            "total": decimal_text(row.total),
            "erp_document_id": document.id if document is not None else None,
            "erp_total": erp_total,
            "difference": decimal_text(row.total - document.total) if document else None,
        },
    )


def _ledger_variance(period: Period, ledger: ReconciledLedger) -> ReconciliationVariance:
    return ReconciliationVariance(
        kind="journal_unbalanced",
        subject=f"{period}:ledger:{ledger.legal_entity_id}:{ledger.currency}",
        detail=(
            f"{period}: the ERP ledger of {ledger.legal_entity_id} in {ledger.currency} does "
            f"not balance: debits minus credits is {decimal_text(ledger.imbalance)}"
        ),
        context={
            "period": str(period),
            "legal_entity_id": ledger.legal_entity_id,
            "currency": ledger.currency,
            "imbalance": decimal_text(ledger.imbalance),
        },
    )
