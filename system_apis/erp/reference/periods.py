"""Accounting periods of the reference ERP: what every booking (a document's posting, a
payment's receipt) checks before it writes to the ledger.

A period without a stored status is open. A booking materialises its period row and holds
it shared until it commits, so closing the period (an UPDATE of that row) waits for the
bookings in flight and no entry slips into a period after it was closed.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from canonical.errors import BusinessRuleViolation, InvalidRequest
from canonical.persistence import insert_ignore
from canonical.time import Period, utcnow
from system_apis.erp.reference.tables import periods

__all__ = ["period_of", "require_open_period"]


def period_of(text: str) -> str:
    """``YYYY-MM`` from caller input, or ``InvalidRequest``."""
    try:
        return str(Period.parse(text))
    except ValueError:
        raise InvalidRequest(
            f"period must be YYYY-MM, got {text[:20]!r}", code="invalid_period"
        ) from None


async def require_open_period(s: AsyncSession, legal_entity_id: str, day: date) -> None:
    """Refuse (``period_closed``) a booking dated ``day`` in a closed period of the legal
    entity; otherwise hold the period open until the transaction of ``s`` ends."""
    period = f"{day.year:04d}-{day.month:02d}"
    await s.execute(
        insert_ignore(periods, s.bind.dialect.name, ["legal_entity_id", "period"]).values(
            legal_entity_id=legal_entity_id, period=period, status="open", updated_at=utcnow()
        )
    )
    status = (
        await s.execute(
            sa.select(periods.c.status)
            .where(periods.c.legal_entity_id == legal_entity_id, periods.c.period == period)
            .with_for_update(read=True)
        )
    ).scalar()
    if status == "closed":
        raise BusinessRuleViolation(
            f"accounting period {period} of {legal_entity_id} is closed", code="period_closed"
        )
