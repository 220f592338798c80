"""Revenue recognition journals in the reference ERP: a GL entry with no AR document,
moving revenue between the contract balance (2400) and the items' revenue accounts.

Posting is idempotent by ``external_ref`` (the same journal again answers the one
posted) and follows the rules of any booking: a known legal entity and items, amounts in
whole minor units of a known currency, an open period for ``posting_date``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation
from canonical.errors import InvalidRequest
from canonical.ids import new_id
from canonical.model import ErpRevenueJournal, JournalLine, RevenueJournal
from canonical.time import utcnow
from system_apis.erp.reference.documents import (
    check_booking,
    check_rounded,
    check_text,
    is_external_ref,
    require_legal_entity,
)
from system_apis.erp.reference.journal import build_revenue_journal
from system_apis.erp.reference.periods import require_open_period
from system_apis.erp.reference.tables import (
    journal_entries,
    journal_lines,
    revenue_journals,
)

__all__ = ["check_revenue_journal", "find_revenue_journal", "post_revenue_journal"]

# Item codes → revenue accounts, within the posting's transaction (``unknown_item``).
AccountsOf = Callable[[AsyncSession, set[str]], Awaitable[dict[str, str]]]


def check_revenue_journal(journal: RevenueJournal) -> None:
    """What needs no database: shape, currency and amounts in whole minor units."""
    check_booking(journal.external_ref, journal.correlation_id, journal.currency, journal.lines)
    check_text(journal.description, "description", 500)
    for n, line in enumerate(journal.lines, start=1):
        if not line.amount.is_finite():
            raise InvalidRequest(f"line {n}: the amount must be finite", code="invalid_field")
        check_rounded(line.amount, journal.currency, n)


async def post_revenue_journal(
    sessions: async_sessionmaker, journal: RevenueJournal, accounts_of: AccountsOf
) -> ErpRevenueJournal:
    check_revenue_journal(journal)
    existing = await find_revenue_journal(sessions, journal.external_ref)
    if existing is not None:
        return existing
    try:
        async with sessions.begin() as s:
            return await _insert(s, journal, accounts_of)
    except IntegrityError:
        # A concurrent post of the same external_ref won the unique constraint.
        existing = await find_revenue_journal(sessions, journal.external_ref)
        if existing is None:
            raise
        return existing


async def find_revenue_journal(
    sessions: async_sessionmaker, external_ref: str
) -> ErpRevenueJournal | None:
    if not is_external_ref(external_ref):
        return None
    async with sessions() as s:
        row = (
            await s.execute(
                sa.select(revenue_journals).where(revenue_journals.c.external_ref == external_ref)
            )
        ).first()
        if row is None:
            return None
        lines = await s.execute(
            sa.select(journal_lines)
            .where(journal_lines.c.entry_id == row.journal_entry_id)
            .order_by(journal_lines.c.line_no)
        )
        return _journal(
            row._asdict(),
            [JournalLine(account=r.account, debit=r.debit, credit=r.credit) for r in lines],
        )


async def _insert(
    s: AsyncSession, journal: RevenueJournal, accounts_of: AccountsOf
) -> ErpRevenueJournal:
    entity = journal.legal_entity_id
    await require_legal_entity(s, entity)
    await require_open_period(s, entity, journal.posting_date)
    accounts = await accounts_of(s, {line.item_code for line in journal.lines})
    lines = build_revenue_journal(
        journal.currency, [(accounts[line.item_code], line.amount) for line in journal.lines]
    )
    entry_id, now = new_id("jnl"), utcnow()
    correlation_id = journal.correlation_id or correlation.current()
    await s.execute(
        sa.insert(journal_entries).values(
            id=entry_id,
            document_id=None,
            legal_entity_id=entity,
            posting_date=journal.posting_date,
            currency=journal.currency,
            correlation_id=correlation_id,
            created_at=now,
        )
    )
    if lines:
        await s.execute(
            sa.insert(journal_lines),
            [
                {
                    "entry_id": entry_id,
                    "line_no": n,
                    "account": line.account,
                    "debit": line.debit,
                    "credit": line.credit,
                }
                for n, line in enumerate(lines, 1)
            ],
        )
    row = {
        "id": new_id("rvj"),
        "external_ref": journal.external_ref,
        "legal_entity_id": entity,
        "currency": journal.currency,
        "posting_date": journal.posting_date,
        "description": journal.description,
        "journal_entry_id": entry_id,
        "correlation_id": correlation_id,
        "created_at": now,
    }
    await s.execute(sa.insert(revenue_journals).values(**row))
    return _journal(row, lines)


def _journal(row: dict, lines: list[JournalLine]) -> ErpRevenueJournal:
    return ErpRevenueJournal(
        id=row["id"],
        external_ref=row["external_ref"],
        legal_entity_id=row["legal_entity_id"],
        currency=row["currency"],
        posting_date=row["posting_date"],
        description=row["description"],
        lines=lines,
        correlation_id=row["correlation_id"],
        created_at=row["created_at"],
    )
