"""The audit log: an append-only, hash-chained record of every state change (who, what,
when, under which correlation ID), and its verification.

Why a chain: each entry's ``hash`` covers its content and the previous entry's hash, so
altering, inserting, removing or reordering an entry breaks the chain at that point;
``audit_head`` (see ``table``) also catches a removed tail. Entries are appended in the
caller's transaction, so an entry commits or rolls back with the change it records.

What it does not stop: someone able to rewrite the tables can recompute the whole chain.
Keep the application's database role to INSERT and SELECT on ``audit_log`` (SELECT and
UPDATE on ``audit_head``), and record ``VerifyResult.head_hash`` outside the database
(a ticket, a signed report) from time to time: a rewrite then no longer matches it.

Hash of an entry: SHA-256 (hex) of the msgspec JSON array, keys sorted at every level,
``[HASH_FORMAT, seq, at (RFC 3339, UTC, microseconds, "Z"), actor, action,
subject_type, subject_id, data, correlation_id, prev_hash]``; the first entry's
``prev_hash`` is ``GENESIS_HASH``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from canonical import correlation, errors
from canonical.persistence import insert_ignore
from canonical.time import as_utc, utcnow
from process_apis.audit.table import HEAD_ID, audit_head, audit_log
from process_apis.paging import equal_to

__all__ = [
    "GENESIS_HASH",
    "HASH_FORMAT",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditProblem",
    "VerifyResult",
    "acting_as",
    "append",
    "append_many",
    "audit_actor",
    "entry_hash",
    "verify",
]

GENESIS_HASH = "0" * 64
HASH_FORMAT = "meterline.audit.v1"

# Who acts in this context: the gateway sets the OAuth client id per request; the CLI and
# workers set "cli" / "worker". An explicit ``actor=`` wins.
audit_actor: ContextVar[str] = ContextVar("audit_actor", default="system")


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = audit_actor.set(actor)
    try:
        yield
    finally:
        audit_actor.reset(token)


class AuditLogCorrupt(errors.MeterlineError):
    """The chain head is missing while entries exist: appending would fork the chain."""

    title = "Audit log corrupt"


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One state change to record (``append_many``'s input)."""

    action: str  # e.g. "invoice.finalized"
    subject_type: str  # e.g. "invoice"
    subject_id: str
    data: dict[str, Any] | None = None
    actor: str | None = None  # default: audit_actor
    correlation_id: str | None = None  # default: correlation.current()


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    correlation_id: str | None
    prev_hash: str
    hash: str


ProblemKind = Literal[
    "gap",  # seqs missing before ``seq``: entries removed
    "broken_link",  # prev_hash is not the previous entry's hash: removed, replaced, reordered
    "altered",  # the entry's content does not match its hash
    "truncated",  # the head names entries after the last one: the tail was removed
    "untracked_tail",  # entries after the head: written without the appender
    "head_mismatch",  # the last entry is not the one the head names: replaced
    "head_missing",
]


class AuditProblem(msgspec.Struct, frozen=True, kw_only=True):
    kind: ProblemKind
    seq: int  # the first entry found wrong (or missing)
    detail: str


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    entries: int  # entries checked (up to the first problem)
    head_seq: int  # last entry checked
    head_hash: str  # its hash: worth recording outside the database
    problem: AuditProblem | None = None


def _rfc3339(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(data: dict[str, Any] | None) -> dict[str, Any]:
    """``data`` as it reads back from the database (Decimals and datetimes as strings),
    keys sorted, so the hash computed now is the one verification recomputes."""
    return msgspec.json.decode(msgspec.json.encode(data or {}, order="sorted"))


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
    correlation_id: str | None,
    prev_hash: str,
) -> str:
    fields = [HASH_FORMAT, seq, _rfc3339(at), actor, action, subject_type, subject_id]
    fields += [data, correlation_id, prev_hash]
    return hashlib.sha256(msgspec.json.encode(fields, order="sorted")).hexdigest()


_HASHED = tuple(c.name for c in audit_log.columns if c.name != "hash")


def _stored_hash(row) -> str:
    return entry_hash(**{name: getattr(row, name) for name in _HASHED})


async def append(
    session: AsyncSession,
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
    correlation_id: str | None = None,
) -> AuditEntry:
    """Record one state change in ``session``'s transaction (see ``append_many``)."""
    event = AuditEvent(
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        data=data,
        actor=actor,
        correlation_id=correlation_id,
    )
    return (await append_many(session, [event]))[0]


async def append_many(session: AsyncSession, events: Sequence[AuditEvent]) -> list[AuditEntry]:
    """Record state changes in ``session``'s transaction, in order.

    Appending locks the chain head until the transaction ends (a row lock on
    PostgreSQL, the write lock on SQLite): concurrent appenders queue instead of
    forking the chain. Append last in a transaction, so the lock is held briefly and
    never taken before other row locks (no deadlock)."""
    if not events:
        return []
    prev_seq, prev_hash = await _advance_head(session, len(events))
    at = utcnow()
    entries = []
    for seq, event in enumerate(events, start=prev_seq + 1):
        fields = {
            "seq": seq,
            "at": at,
            "actor": event.actor or audit_actor.get(),
            "action": event.action,
            "subject_type": event.subject_type,
            "subject_id": event.subject_id,
            "data": _canonical(event.data),
            "correlation_id": event.correlation_id or correlation.current(),
            "prev_hash": prev_hash,
        }
        prev_hash = entry_hash(**fields)
        entries.append(AuditEntry(**fields, hash=prev_hash))
    await session.execute(sa.insert(audit_log), [msgspec.structs.asdict(e) for e in entries])
    await session.execute(
        sa.update(audit_head).where(audit_head.c.id == HEAD_ID).values(hash=prev_hash)
    )
    return entries


async def _advance_head(session: AsyncSession, count: int) -> tuple[int, str]:
    """Reserve ``count`` seqs: the previous head's seq and hash. Being an UPDATE, it
    takes the head's lock before anything is read."""
    stmt = (
        sa.update(audit_head)
        .where(audit_head.c.id == HEAD_ID)
        .values(seq=audit_head.c.seq + count)
        .returning(audit_head.c.seq, audit_head.c.hash)
    )
    row = (await session.execute(stmt)).first()
    if row is None:  # a schema built without the migration's head row
        if await session.scalar(sa.select(audit_log.c.seq).limit(1)) is not None:
            raise AuditLogCorrupt("audit_head is missing while audit_log holds entries")
        await session.execute(
            insert_ignore(audit_head, session.bind.dialect.name, ["id"]).values(
                id=HEAD_ID, seq=0, hash=GENESIS_HASH
            )
        )
        row = (await session.execute(stmt)).one()
    return row.seq - count, row.hash


class _Chain:
    """The verification walk: the last good entry, and the first problem met."""

    def __init__(self) -> None:
        self.seq, self.hash, self.count = 0, GENESIS_HASH, 0
        self.problem: AuditProblem | None = None

    def fail(self, kind: ProblemKind, seq: int, detail: str) -> None:
        self.problem = AuditProblem(kind=kind, seq=seq, detail=detail)

    def check(self, row) -> bool:
        expected = self.seq + 1
        if row.seq != expected:
            self.fail("gap", expected, f"entries {expected}..{row.seq - 1} are missing")
        elif row.prev_hash != self.hash:
            self.fail(
                "broken_link",
                row.seq,
                f"prev_hash is not entry {self.seq}'s hash: an entry before it was "
                "removed, replaced or altered and re-hashed",
            )
        elif _stored_hash(row) != row.hash:
            self.fail("altered", row.seq, "the entry's content does not match its hash")
        else:
            self.seq, self.hash, self.count = row.seq, row.hash, self.count + 1
        return self.problem is None

    def check_head(self, head) -> None:
        if head is None:
            if self.count:
                self.fail("head_missing", self.seq, "audit_head is missing")
        elif head.seq > self.seq:
            self.fail("truncated", self.seq + 1, f"entries {self.seq + 1}..{head.seq} are missing")
        elif head.seq < self.seq:
            self.fail("untracked_tail", head.seq + 1, f"entries after {head.seq} bypassed the head")
        elif head.hash != self.hash:
            self.fail("head_mismatch", self.seq, "the last entry is not the one audit_head names")


async def _walk(session, chain: _Chain, page_size: int, upto, progress) -> None:
    while chain.problem is None:
        query = sa.select(audit_log).where(audit_log.c.seq > chain.seq)
        if upto is not None:
            query = query.where(audit_log.c.seq <= upto)
        rows = (await session.execute(query.order_by(audit_log.c.seq).limit(page_size))).all()
        if not all(chain.check(row) for row in rows) or len(rows) < page_size:
            break
        if progress is not None:
            progress(chain.count)


async def verify(
    sessions: async_sessionmaker,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk the whole log in seq order, a page at a time (memory stays flat), and
    report the first problem. Safe while appends go on: entries committed after the walk
    began are checked up to the head read at its end."""
    chain = _Chain()
    async with sessions() as session:
        await _walk(session, chain, page_size, None, progress)
        if chain.problem is None:
            # Read after the walk: every entry seen was committed with a head at least
            # as far, so entries past this head were not written by the appender.
            head = (await session.execute(sa.select(audit_head))).first()
            if head is not None and head.seq > chain.seq:
                await _walk(session, chain, page_size, head.seq, progress)
            if chain.problem is None:
                chain.check_head(head)
    if progress is not None:
        progress(chain.count)
    return VerifyResult(
        ok=chain.problem is None,
        entries=chain.count,
        head_seq=chain.seq,
        head_hash=chain.hash,
        problem=chain.problem,
    )


class AuditLog:
    """Reading and verifying the log (appends go through ``append`` in the changing
    transaction)."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def list(
        self,
        *,
        subject_type: str | None = None,
        subject_id: str | None = None,
        correlation_id: str | None = None,
        action: str | None = None,
        limit: int = 50,
        starting_after: int | None = None,
    ) -> tuple[list[AuditEntry], bool]:
        """Entries in seq order, after the cursor ``starting_after`` (an entry's seq),
        and whether more follow; ``None`` filters nothing."""
        conditions = equal_to(
            audit_log,
            subject_type=subject_type,
            subject_id=subject_id,
            correlation_id=correlation_id,
            action=action,
        )
        query = sa.select(audit_log).where(*conditions)
        if starting_after is not None:
            query = query.where(audit_log.c.seq > starting_after)
        async with self._sessions() as session:
            query = query.order_by(audit_log.c.seq).limit(limit + 1)
            rows = (await session.execute(query)).all()
        return [AuditEntry(**row._asdict()) for row in rows[:limit]], len(rows) > limit

    async def verify(self, *, page_size: int = 1000, progress=None) -> VerifyResult:
        return await verify(self._sessions, page_size=page_size, progress=progress)
