"""The reference ERP: a stand-in for a real ERP, persisted in the gateway's database.

Posting is idempotent by ``external_ref``: the unique constraint on it decides between
concurrent posts, and the loser reads back the winner's document. A post holds a shared
lock on its accounting period row, so closing a period waits for posts in flight.
Customer payments (``payments.py``) are idempotent by their own ``external_ref`` and
recorded one at a time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation
from canonical.errors import BusinessRuleViolation, InvalidRequest, NotFound
from canonical.model import (
    ErpDocument,
    ErpInvoice,
    ErpItem,
    ErpPayment,
    ErpPaymentIn,
    ErpRevenueJournal,
    LegalEntity,
    RevenueJournal,
)
from canonical.money import is_currency
from canonical.persistence import insert_ignore, upsert
from canonical.time import utcnow
from system_apis.erp.port import (
    CODE_PATTERN,
    REVENUE_ACCOUNT_PATTERN,
    AccountingPeriod,
    PeriodStatus,
)
from system_apis.erp.reference.documents import (
    check_invoice,
    check_text,
    insert_document,
    is_external_ref,
    load_documents,
    require_legal_entity,
)
from system_apis.erp.reference.payments import list_payments, record_payment
from system_apis.erp.reference.periods import period_of, require_open_period
from system_apis.erp.reference.revenue import find_revenue_journal, post_revenue_journal
from system_apis.erp.reference.tables import (
    customers,
    documents,
    items,
    journal_entries,
    journal_lines,
    legal_entities,
    periods,
)

__all__ = ["ReferenceErp"]

_CODE = re.compile(CODE_PATTERN)
_REVENUE_ACCOUNT = re.compile(REVENUE_ACCOUNT_PATTERN)


def _is_code(value: str) -> bool:
    return _CODE.fullmatch(value) is not None


def _require_code(value: str, what: str) -> None:
    if not _is_code(value):
        raise BusinessRuleViolation(
            f"{what} {value[:80]!r} is not a valid identifier", code="invalid_id"
        )


class ReferenceErp:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    # --- master data -----------------------------------------------------------------

    async def put_legal_entity(self, entity: LegalEntity) -> LegalEntity:
        _require_code(entity.id, "legal entity id")
        check_text(entity.name, "name", 200)
        for field in ("country", "us_state"):
            value = getattr(entity, field)
            if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
                raise InvalidRequest(f"{field} must be a two-letter code", code="invalid_field")
        if entity.vat_id is not None and not 1 <= len(entity.vat_id) <= 64:
            raise InvalidRequest("vat_id must be 1-64 characters", code="invalid_field")
        if not is_currency(entity.currency):
            raise BusinessRuleViolation(
                f"unknown currency {entity.currency!r}", code="unknown_currency"
            )
        async with self._sessions.begin() as s:
            row = {f: getattr(entity, f) for f in entity.__struct_fields__}
            await s.execute(upsert(legal_entities, s.bind.dialect.name, row, ["id"]))
        return entity

    async def get_legal_entity(self, entity_id: str) -> LegalEntity:
        if _is_code(entity_id):
            async with self._sessions() as s:
                row = (
                    await s.execute(
                        sa.select(legal_entities).where(legal_entities.c.id == entity_id)
                    )
                ).first()
            if row is not None:
                return LegalEntity(**row._asdict())
        raise NotFound(f"legal entity {entity_id[:80]} not found", code="legal_entity_not_found")

    async def list_legal_entities(self) -> list[LegalEntity]:
        async with self._sessions() as s:
            rows = await s.execute(sa.select(legal_entities).order_by(legal_entities.c.id))
            return [LegalEntity(**r._asdict()) for r in rows]

    async def put_item(self, item: ErpItem) -> ErpItem:
        _require_code(item.code, "item code")
        check_text(item.name, "name", 200)
        if not _REVENUE_ACCOUNT.fullmatch(item.revenue_account):
            raise BusinessRuleViolation(
                f"{item.revenue_account!r} cannot be a revenue account",
                code="invalid_revenue_account",
            )
        async with self._sessions.begin() as s:
            row = {"code": item.code, "name": item.name, "revenue_account": item.revenue_account}
            await s.execute(upsert(items, s.bind.dialect.name, row, ["code"]))
        return item

    async def list_items(self) -> list[ErpItem]:
        async with self._sessions() as s:
            rows = await s.execute(sa.select(items).order_by(items.c.code))
            return [ErpItem(**r._asdict()) for r in rows]

    # --- accounting periods ----------------------------------------------------------

    async def set_period_status(
        self, legal_entity_id: str, period: str, status: PeriodStatus
    ) -> AccountingPeriod:
        period = period_of(period)
        if status not in ("open", "closed"):
            raise InvalidRequest("status must be open or closed", code="invalid_field")
        await self.get_legal_entity(legal_entity_id)
        async with self._sessions.begin() as s:
            row = {
                "legal_entity_id": legal_entity_id,
                "period": period,
                "status": status,
                "updated_at": utcnow(),
            }
            await s.execute(
                upsert(periods, s.bind.dialect.name, row, ["legal_entity_id", "period"])
            )
        return AccountingPeriod(legal_entity_id=legal_entity_id, period=period, status=status)

    async def get_period(self, legal_entity_id: str, period: str) -> AccountingPeriod:
        period = period_of(period)
        await self.get_legal_entity(legal_entity_id)
        async with self._sessions() as s:
            status = (
                await s.execute(
                    sa.select(periods.c.status).where(
                        periods.c.legal_entity_id == legal_entity_id, periods.c.period == period
                    )
                )
            ).scalar()
        return AccountingPeriod(
            legal_entity_id=legal_entity_id, period=period, status=status or "open"
        )

    # --- documents -------------------------------------------------------------------

    async def post_invoice(self, invoice: ErpInvoice) -> ErpDocument:
        check_invoice(invoice)
        existing = await self.find_document(invoice.external_ref)
        if existing is not None:
            return existing
        try:
            async with self._sessions.begin() as s:
                return await self._post(s, invoice)
        except IntegrityError:
            # A concurrent post of the same external_ref won the unique constraint.
            existing = await self.find_document(invoice.external_ref)
            if existing is None:
                raise
            return existing

    async def _post(self, s: AsyncSession, invoice: ErpInvoice) -> ErpDocument:
        le_id = invoice.legal_entity_id
        await require_legal_entity(s, le_id)
        await require_open_period(s, le_id, invoice.posting_date)
        accounts = await self._revenue_accounts(s, {line.item_code for line in invoice.lines})
        _require_code(invoice.customer_id, "customer_id")
        await s.execute(
            insert_ignore(customers, s.bind.dialect.name, ["id"]).values(
                id=invoice.customer_id, name=invoice.customer_name, created_at=utcnow()
            )
        )
        return await insert_document(
            s, invoice, accounts, invoice.correlation_id or correlation.current()
        )

    async def _revenue_accounts(self, s: AsyncSession, codes: set[str]) -> dict[str, str]:
        valid = [c for c in codes if _is_code(c)]
        rows = await s.execute(
            sa.select(items.c.code, items.c.revenue_account).where(items.c.code.in_(valid))
        )
        accounts = {r.code: r.revenue_account for r in rows}
        missing = sorted(codes - accounts.keys())
        if missing:
            raise BusinessRuleViolation(
                f"unknown item(s): {', '.join(m[:64] for m in missing[:10])}", code="unknown_item"
            )
        return accounts

    async def find_document(self, external_ref: str) -> ErpDocument | None:
        if not is_external_ref(external_ref):
            return None
        async with self._sessions() as s:
            found = await load_documents(s, documents.c.external_ref == external_ref)
        return found[0] if found else None

    async def get_document(self, document_id: str) -> ErpDocument:
        if _is_code(document_id):
            async with self._sessions() as s:
                found = await load_documents(s, documents.c.id == document_id)
            if found:
                return found[0]
        raise NotFound(f"document {document_id[:80]} not found", code="document_not_found")

    async def list_documents(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        customer_id: str | None = None,
    ) -> tuple[list[ErpDocument], bool]:
        where = []
        if starting_after is not None:
            where.append(documents.c.id > starting_after)
        if customer_id is not None:
            if not _is_code(customer_id):
                return [], False
            where.append(documents.c.customer_id == customer_id)
        async with self._sessions() as s:
            found = await load_documents(s, *where, limit=limit + 1)
        return found[:limit], len(found) > limit

    # --- payments --------------------------------------------------------------------

    async def record_payment(self, payment: ErpPaymentIn) -> ErpPayment:
        return await record_payment(self._sessions, payment)

    async def list_payments(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[ErpPayment], bool]:
        return await list_payments(self._sessions, after=after, limit=limit)

    # --- revenue recognition ---------------------------------------------------------

    async def post_revenue_journal(self, journal: RevenueJournal) -> ErpRevenueJournal:
        return await post_revenue_journal(self._sessions, journal, self._revenue_accounts)

    async def find_revenue_journal(self, external_ref: str) -> ErpRevenueJournal | None:
        return await find_revenue_journal(self._sessions, external_ref)

    # --- the ledger ------------------------------------------------------------------

    async def account_balances(
        self, legal_entity_id: str | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        query = sa.select(journal_lines.c.account, journal_lines.c.debit, journal_lines.c.credit)
        query = query.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id)
        if legal_entity_id is not None:
            query = query.where(journal_entries.c.legal_entity_id == legal_entity_id)
        if currency is not None:
            query = query.where(journal_entries.c.currency == currency)
        balances: dict[str, Decimal] = defaultdict(Decimal)
        # Amounts are exact decimal text: sum in Python, never through a SQL float.
        async with self._sessions() as s:
            for row in await s.execute(query):
                balances[row.account] += row.debit - row.credit
        return dict(sorted(balances.items()))
