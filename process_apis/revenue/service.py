"""Reading revenue schedules and recognition journals."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import errors
from process_apis.revenue.recognizer import plan_of
from process_apis.revenue.schedule import entries
from process_apis.revenue.table import revenue_journals, revenue_schedules
from process_apis.revenue.views import (
    DocumentSchedule,
    JournalLineView,
    RevenueJournalView,
    ScheduleEntry,
    ScheduleLine,
)
from process_apis.tables import invoice_lines, invoices

__all__ = ["RevenueService"]


class RevenueService:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def schedule(self, document_id: str) -> DocumentSchedule:
        async with self._sessions() as session:
            known = await session.scalar(
                sa.select(invoices.c.id).where(invoices.c.id == document_id)
            )
            if known is None:
                raise errors.NotFound(
                    f"invoice {document_id[:80]} not found", code="invoice_not_found"
                )
            rows = (
                await session.execute(
                    sa.select(revenue_schedules)
                    .join(invoice_lines, invoice_lines.c.id == revenue_schedules.c.line_id)
                    .where(revenue_schedules.c.document_id == document_id)
                    .order_by(invoice_lines.c.position)
                )
            ).all()
        if not rows:
            raise errors.NotFound(
                f"invoice {document_id} has no revenue schedule yet: a document is "
                "scheduled once it is posted to the ERP",
                code="schedule_not_found",
            )
        lines = []
        for row in rows:
            planned = [
                ScheduleEntry(
                    on=e.on,
                    amount=e.amount,
                    booked=row.booked_through is not None and e.on < row.booked_through,
                )
                for e in entries(plan_of(row))
            ]
            # The deferral on the posting date is netted into that date's entry: once
            # that date is booked, the line's amount counts back in.
            deferred = row.booked_through is not None and row.posting_date < row.booked_through
            recognised = sum((e.amount for e in planned if e.booked), Decimal(0))
            if deferred:
                recognised += row.amount
            lines.append(
                ScheduleLine(
                    line_id=row.line_id,
                    item_code=row.item_code,
                    method=row.method,
                    service_start=row.service_start,
                    service_end=row.service_end,
                    amount=row.amount,
                    recognised=recognised,
                    entries=planned,
                )
            )
        return DocumentSchedule(
            document_id=document_id, posting_date=rows[0].posting_date, lines=lines
        )

    async def journals(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> tuple[list[RevenueJournalView], bool]:
        query = sa.select(revenue_journals).order_by(revenue_journals.c.id).limit(limit + 1)
        if status is not None:
            query = query.where(revenue_journals.c.status == status)
        if starting_after is not None:
            query = query.where(revenue_journals.c.id > starting_after)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [_journal(r) for r in rows[:limit]], len(rows) > limit


def _journal(row) -> RevenueJournalView:
    return RevenueJournalView(
        id=row.id,
        legal_entity_id=row.legal_entity_id,
        currency=row.currency,
        posting_date=row.posting_date,
        status=row.status,
        lines=[
            JournalLineView(item_code=line["item_code"], amount=Decimal(line["amount"]))
            for line in row.lines
        ],
        attempts=row.attempts,
        last_error=row.last_error,
        erp_journal_id=row.erp_journal_id,
        created_at=row.created_at,
        posted_at=row.posted_at,
    )
