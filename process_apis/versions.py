"""Version stamps of the data read views are made of, read in one cheap query per
request: a view cached under them is never served once the data changed, whichever
process changed it, with no invalidation hook anywhere (docs/adr/0014).

- ``documents``: ``audit_head.seq``. Every change of an invoice or memo (written by a
  billing run or a correction, finalized, posted, paid, voided) and every payment
  applied appends an audit entry in the changing transaction, and appenders queue on
  the head row, so the head moves forward, in commit order, with each of them.
- ``usage``: the highest ``usage_events.seq`` (the primary key: one index probe).
  Events are only ever inserted, never deleted, and aggregation reads every stored
  event. On SQLite writers are serialised, so a commit never brings a seq below the
  highest one already visible. On PostgreSQL concurrent ingest transactions may commit
  out of seq order: while a transaction writing ``usage_events`` is open (its
  ``RowExclusiveLock`` shows in ``pg_locks``) seqs below the visible highest may still
  appear. ``usage_settled`` asks that, on a miss, after the stamp was read and before
  the view's data is: a view is kept under the stamp only if usage was settled then
  (it then holds every event up to the stamp, so a later hit needs no check).

Read the stamps *before* the data: a view computed afterwards is then at least as new
as its stamps, never older.
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from process_apis.audit.table import HEAD_ID, audit_head
from process_apis.tables import usage_events

__all__ = ["DataVersions", "Versions"]

_DOCUMENTS = sa.select(audit_head.c.seq).where(audit_head.c.id == HEAD_ID).scalar_subquery()
_USAGE = sa.select(sa.func.max(usage_events.c.seq)).scalar_subquery()
# Another session of this database writing usage_events right now (granted or waiting).
_WRITING = sa.literal_column(
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'relation' "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.relation = to_regclass('usage_events') AND l.mode = 'RowExclusiveLock' "
    "AND l.pid <> pg_backend_pid())"
)


class Versions(msgspec.Struct, frozen=True):
    documents: int
    usage: int | None = None  # None when not asked for


class DataVersions:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def read(self, *, usage: bool = False) -> Versions:
        """The documents stamp, and with ``usage`` the usage stamp: one round trip."""
        columns = [_DOCUMENTS, _USAGE] if usage else [_DOCUMENTS]
        async with self._sessions() as session:
            row = (await session.execute(sa.select(*columns))).one()
        return Versions(row[0] or 0, (row[1] or 0) if usage else None)

    async def usage_settled(self) -> bool:
        """Whether no usage event can still appear below the highest visible seq: always
        on SQLite (writers are serialised), on PostgreSQL when no other session is
        writing ``usage_events`` right now."""
        async with self._sessions() as session:
            if session.bind.dialect.name != "postgresql":
                return True
            return not (await session.execute(sa.select(_WRITING))).scalar()
