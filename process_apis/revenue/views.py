"""What the revenue API answers: a document's schedule and the recognition journals."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from canonical.model import Base, Page

__all__ = [
    "DocumentSchedule",
    "JournalLineView",
    "RevenueJournalList",
    "RevenueJournalView",
    "ScheduleEntry",
    "ScheduleLine",
]


class ScheduleEntry(Base):
    on: date
    # Signed: positive recognises revenue that day, negative defers it (the document's
    # posting date); the entries of a line sum to zero.
    amount: Decimal
    booked: bool  # in a recognition journal


class ScheduleLine(Base):
    line_id: str
    item_code: str
    method: Literal["ratable", "consumption"]
    service_start: date
    service_end: date  # exclusive
    amount: Decimal  # the line's revenue, signed (negative on a credit memo)
    recognised: Decimal  # of ``amount``, recognised in booked journals so far
    entries: list[ScheduleEntry]


class DocumentSchedule(Base):
    object: Literal["revenue_schedule"] = "revenue_schedule"
    document_id: str = ""
    posting_date: date | None = None
    lines: list[ScheduleLine] = []


class JournalLineView(Base):
    item_code: str
    amount: Decimal  # signed: positive credits revenue, negative debits it


class RevenueJournalView(Base):
    id: str  # the ERP external_ref
    legal_entity_id: str
    currency: str
    posting_date: date
    status: Literal["pending", "posted", "failed"]
    lines: list[JournalLineView]
    attempts: int
    last_error: str | None
    erp_journal_id: str | None
    created_at: datetime
    posted_at: datetime | None


class RevenueJournalList(Page):
    data: list[RevenueJournalView]
