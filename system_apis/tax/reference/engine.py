"""The built-in tax engine: the rules of ``rules.py`` plus an audit log of every quote
it gave. A stand-in for a real one (Avalara, Vertex, ...), behind the same port."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from canonical import correlation
from canonical.ids import new_id
from canonical.model import TaxLine
from canonical.time import utcnow
from system_apis.tax.port import TaxRequest, VatCheck
from system_apis.tax.reference.rules import check_vat, tax_lines
from system_apis.tax.reference.tables import quotes

__all__ = ["ReferenceTax"]


class ReferenceTax:
    """Implements ``TaxPort``; quotes are logged in ``tax_quotes`` with the correlation ID
    of the work that asked, so an invoice's tax can be traced to the quote behind it."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def quote(self, request: TaxRequest) -> list[TaxLine]:
        now = utcnow()
        lines = tax_lines(request, now.date())
        async with self._sessions.begin() as s:
            await s.execute(
                insert(quotes).values(
                    id=new_id("txq"),
                    request=request,
                    response=lines,
                    correlation_id=correlation.current(),
                    created_at=now,
                )
            )
        return lines

    async def validate_vat(self, vat_id: str) -> VatCheck:
        return check_vat(vat_id)
