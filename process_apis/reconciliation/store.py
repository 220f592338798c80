"""The latest reconciliation report of each period, kept as it was made.

Reconciling calls the ERP and counts another occurrence of every standing variance, so
whoever only wants to see where a period stands reads the kept report instead (the
finance overview and page); it is replaced by each new reconciliation of the period.
Two reconciliations finishing together keep the one made last."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation
from canonical.persistence import upsert_insert
from canonical.time import Period
from process_apis.reconciliation.report import ReconciliationReport
from process_apis.tables import reconciliation_reports

__all__ = ["ReportStore", "keep_report"]


async def keep_report(session: AsyncSession, report: ReconciliationReport) -> bool:
    """Keep ``report`` as its period's latest in ``session``'s transaction, unless one
    made later is kept already; whether it was kept. On PostgreSQL the statement holds
    the period's row until the transaction ends, so concurrent reconciliations of one
    period pass here one after the other, each against the last one committed."""
    row = {
        "period": report.period,
        "status": report.status,
        "generated_at": report.generated_at,
        "report": report,
        "correlation_id": correlation.current(),
    }
    stmt = upsert_insert(reconciliation_reports, session.bind.dialect.name).values(**row)
    kept = await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["period"],
            set_={name: stmt.excluded[name] for name in row if name != "period"},
            where=reconciliation_reports.c.generated_at <= stmt.excluded.generated_at,
        )
    )
    return kept.rowcount == 1


class ReportStore:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def latest(self, period: Period) -> ReconciliationReport | None:
        """The period's latest report; None when it was never reconciled."""
        async with self._sessions() as session:
            kept = await session.scalar(
                sa.select(reconciliation_reports.c.report).where(
                    reconciliation_reports.c.period == str(period)
                )
            )
        if kept is None:
            return None
        try:
            return msgspec.convert(kept, ReconciliationReport)
        except msgspec.ValidationError:
            # Kept by a version whose report had another shape: as good as none, until
            # the period is reconciled again.
            return None
