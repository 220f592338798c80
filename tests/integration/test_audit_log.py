"""The hash-chained audit log on SQLite and PostgreSQL: appends chain in the caller's
transaction, concurrent appenders never fork the chain, and verification names the first
altered, inserted, removed or reordered entry."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from canonical import correlation
from process_apis.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    AuditLogCorrupt,
    acting_as,
    append,
    append_many,
    log,
    verify,
)
from process_apis.audit.log import entry_hash
from process_apis.audit.table import audit_head, audit_log
from process_apis.exceptions.service import raise_exception
from process_apis.tables import exceptions


async def _append(sessions, count: int, *, start: int = 1) -> list:
    entries = []
    for n in range(start, start + count):
        async with sessions.begin() as session:
            entries.append(
                await append(
                    session,
                    action="invoice.finalized",
                    subject_type="invoice",
                    subject_id=f"inv_{n}",
                    data={"number": n, "total": Decimal("10.50")},
                    actor="client-a",
                    correlation_id=f"corr-{n}",
                )
            )
    return entries


async def _sql(sessions, statement, **params) -> None:
    async with sessions.begin() as session:
        if isinstance(statement, str):
            statement = sa.text(statement)
        await session.execute(statement, params)


async def _insert_forged(sessions, fields: dict) -> None:
    """Insert an entry with the hash a forger who knows the format would compute."""
    hashed = {k: v for k, v in fields.items() if k != "hash"}
    await _sql(sessions, sa.insert(audit_log).values({**hashed, "hash": entry_hash(**hashed)}))


async def _row(sessions, seq: int):
    async with sessions() as session:
        return (await session.execute(sa.select(audit_log).where(audit_log.c.seq == seq))).one()


async def _forged_hash(sessions, seq: int, **changes) -> str:
    """The hash a forger who knows the format computes for entry ``seq`` with ``changes``."""
    row = (await _row(sessions, seq))._asdict()
    row.pop("hash")
    return entry_hash(**{**row, **changes})


async def test_appended_entries_form_a_chain_that_verifies(sessions):
    entries = await _append(sessions, 5)

    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert len({e.hash for e in entries}) == 5
    result = await verify(sessions)
    assert result.ok and result.problem is None
    assert (result.entries, result.head_seq, result.head_hash) == (5, 5, entries[-1].hash)


async def test_an_empty_log_verifies(sessions):
    result = await verify(sessions)
    assert result.ok and (result.entries, result.head_hash) == (0, GENESIS_HASH)


@pytest.mark.parametrize(
    "column, value",
    [
        ("data", {"number": 3, "total": "999.00"}),
        ("actor", "client-b"),
        ("action", "invoice.voided"),
        ("subject_type", "memo"),
        ("subject_id", "inv_x"),
        ("correlation_id", None),
        ("at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("hash", "f" * 64),
    ],
)
async def test_an_altered_entry_is_named(sessions, column, value):
    await _append(sessions, 5)
    await _sql(sessions, sa.update(audit_log).where(audit_log.c.seq == 3).values({column: value}))

    result = await verify(sessions)
    assert not result.ok
    assert (result.problem.kind, result.problem.seq, result.entries) == ("altered", 3, 2)


async def test_data_altered_by_raw_sql_is_named(sessions):
    await _append(sessions, 5)
    altered = '{"number":4,"total":"0"}'
    await _sql(sessions, "UPDATE audit_log SET data = :data WHERE seq = 4", data=altered)

    result = await verify(sessions)
    assert (result.ok, result.problem.kind, result.problem.seq) == (False, "altered", 4)


async def test_a_shifted_timestamp_is_named(sessions):
    entries = await _append(sessions, 3)
    moved = entries[1].at + timedelta(microseconds=1)
    await _sql(sessions, sa.update(audit_log).where(audit_log.c.seq == 2).values(at=moved))

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq) == ("altered", 2)


async def test_an_altered_and_rehashed_entry_breaks_the_next_link(sessions):
    await _append(sessions, 5)
    data = {"number": 3, "total": "0.00"}
    forged = await _forged_hash(sessions, 3, data=data)
    await _sql(
        sessions,
        sa.update(audit_log).where(audit_log.c.seq == 3).values(data=data, hash=forged),
    )

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("broken_link", 4, 3)


async def test_a_removed_middle_entry_is_a_gap(sessions):
    await _append(sessions, 5)
    await _sql(sessions, "DELETE FROM audit_log WHERE seq = 3")

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("gap", 3, 2)


async def test_a_removed_first_entry_is_a_gap(sessions):
    await _append(sessions, 3)
    await _sql(sessions, "DELETE FROM audit_log WHERE seq = 1")

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("gap", 1, 0)


async def test_a_removed_last_entry_is_caught_by_the_head(sessions):
    await _append(sessions, 5)
    await _sql(sessions, "DELETE FROM audit_log WHERE seq = 5")

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("truncated", 5, 4)


async def test_an_emptied_log_is_caught_by_the_head(sessions):
    await _append(sessions, 2)
    await _sql(sessions, "DELETE FROM audit_log")

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq) == ("truncated", 1)


async def test_a_replaced_last_entry_is_caught_by_the_head(sessions):
    entries = await _append(sessions, 3)
    forged = {**_fields(entries[2]), "actor": "client-b"}
    await _sql(sessions, "DELETE FROM audit_log WHERE seq = 3")
    await _insert_forged(sessions, forged)

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq) == ("head_mismatch", 3)


async def test_an_entry_inserted_at_the_end_is_caught_by_the_head(sessions):
    entries = await _append(sessions, 3)
    forged = {**_fields(entries[2]), "seq": 4, "prev_hash": entries[2].hash}
    await _insert_forged(sessions, forged)

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq) == ("untracked_tail", 4)


async def test_an_entry_inserted_in_the_middle_breaks_the_chain(sessions):
    entries = await _append(sessions, 5)
    # Make room at seq 3 (in two steps: PostgreSQL checks the key row by row).
    await _sql(sessions, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3")
    await _sql(sessions, "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
    await _sql(sessions, "UPDATE audit_head SET seq = 6")
    forged = {**_fields(entries[1]), "seq": 3, "subject_id": "inv_forged"}
    forged["prev_hash"] = entries[1].hash
    await _insert_forged(sessions, forged)

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("broken_link", 4, 3)


async def test_reordered_entries_break_the_chain(sessions):
    await _append(sessions, 4)
    await _sql(sessions, "UPDATE audit_log SET seq = 100 WHERE seq = 2")
    await _sql(sessions, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    await _sql(sessions, "UPDATE audit_log SET seq = 3 WHERE seq = 100")

    result = await verify(sessions)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("broken_link", 2, 1)


async def test_verification_pages_through_the_log(sessions):
    await _append(sessions, 23)
    seen: list[int] = []

    result = await verify(sessions, page_size=5, progress=seen.append)
    assert result.ok and result.entries == 23
    assert seen == sorted(seen) and seen[-1] == 23 and len(seen) >= 5

    await _sql(sessions, "UPDATE audit_log SET actor = 'x' WHERE seq = 17")
    result = await verify(sessions, page_size=5)
    assert (result.problem.kind, result.problem.seq, result.entries) == ("altered", 17, 16)


async def test_concurrent_transactions_append_one_dense_chain(sessions):
    async def transaction(n: int) -> list[int]:
        async with sessions.begin() as session:
            # The state change first (a read, then a write), its audit entries last.
            await session.execute(sa.select(sa.func.count()).select_from(audit_log))
            await raise_exception(session, "test", f"subject_{n}", "found", {"n": n})
            if n % 2:
                entries = [await append(session, action="a", subject_type="t", subject_id=str(n))]
            else:
                events = [
                    AuditEvent(action="b", subject_type="t", subject_id=f"{n}.{i}")
                    for i in range(3)
                ]
                entries = await append_many(session, events)
            await asyncio.sleep(0.01)  # hold the transaction open while others queue
        return [e.seq for e in entries]

    groups = await asyncio.gather(*(transaction(n) for n in range(20)))

    assert sorted(s for group in groups for s in group) == list(range(1, 10 * 1 + 10 * 3 + 1))
    assert all(group == list(range(group[0], group[0] + len(group))) for group in groups)
    result = await verify(sessions)
    assert result.ok and result.entries == 40
    async with sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(exceptions)) == 20


async def test_verification_is_consistent_while_appends_go_on(sessions):
    await _append(sessions, 5)
    stop = asyncio.Event()

    async def appender() -> None:
        n = 100
        while not stop.is_set():
            n += 1
            async with sessions.begin() as session:
                await append(session, action="a", subject_type="t", subject_id=str(n))

    task = asyncio.create_task(appender())
    try:
        results = [await verify(sessions, page_size=2) for _ in range(5)]
    finally:
        stop.set()
        await task
    assert all(r.ok for r in results), [r.problem for r in results]
    assert (await verify(sessions)).ok


async def test_entries_committed_between_the_walk_and_the_head_are_checked(sessions, monkeypatch):
    await _append(sessions, 3)
    walk = log._walk
    appended = []

    async def walk_then_append(session, chain, page_size, upto, progress) -> None:
        await walk(session, chain, page_size, upto, progress)
        if not appended:  # the race window: the walk is done, the head not yet read
            appended.extend(await _append(sessions, 2, start=4))

    monkeypatch.setattr(log, "_walk", walk_then_append)
    result = await verify(sessions)
    assert result.ok, result.problem
    assert (result.entries, result.head_hash) == (5, appended[-1].hash)


async def test_an_append_in_a_rolled_back_transaction_leaves_nothing(sessions):
    entries = await _append(sessions, 2)

    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            await append(session, action="invoice.voided", subject_type="invoice", subject_id="x")
            raise RuntimeError("the state change failed")

    async with sessions() as session:
        assert (await session.scalar(sa.select(sa.func.count()).select_from(audit_log))) == 2
        head = (await session.execute(sa.select(audit_head))).one()
    assert (head.seq, head.hash) == (2, entries[-1].hash)
    (after,) = await _append(sessions, 1, start=3)
    assert (after.seq, after.prev_hash) == (3, entries[-1].hash)
    assert (await verify(sessions)).entries == 3


async def test_actor_and_correlation_default_from_the_context(sessions):
    async with sessions.begin() as session:
        plain = await append(session, action="a", subject_type="t", subject_id="1")
        token = correlation.use("corr-ctx")
        try:
            with acting_as("client-ctx"):
                bound = await append(session, action="a", subject_type="t", subject_id="2")
                explicit = await append(
                    session,
                    action="a",
                    subject_type="t",
                    subject_id="3",
                    actor="cli",
                    correlation_id="c",
                )
        finally:
            correlation.reset(token)

    assert (plain.actor, plain.correlation_id) == ("system", None)
    assert (bound.actor, bound.correlation_id) == ("client-ctx", "corr-ctx")
    assert (explicit.actor, explicit.correlation_id) == ("cli", "c")
    assert (await verify(sessions)).ok


async def test_data_is_stored_canonically_and_hashes_as_read_back(sessions):
    data = {
        "z": [1, 2.5, None],
        "amount": Decimal("12.340"),
        "when": datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        "nested": {"b": "é ✓", "a": True},
    }
    async with sessions.begin() as session:
        entry = await append(session, action="a", subject_type="t", subject_id="1", data=data)

    async with sessions() as session:
        text = await session.scalar(sa.text("SELECT data FROM audit_log WHERE seq = 1"))
    assert (
        text.index('"amount"') < text.index('"nested"') < text.index('"when"') < text.index('"z"')
    )
    assert text.index('"a"') < text.index('"b"')
    (listed,), _ = await AuditLog(sessions).list()
    assert listed == entry
    assert entry.data["amount"] == "12.340" and entry.data["when"] == "2026-01-31T12:00:00Z"
    assert (await verify(sessions)).ok


async def test_listing_filters_and_pages(sessions):
    await _append(sessions, 4)
    async with sessions.begin() as session:
        await append(session, action="invoice.posted", subject_type="invoice", subject_id="inv_2")
    audit = AuditLog(sessions)

    first, more = await audit.list(limit=2)
    second, more_after = await audit.list(limit=2, starting_after=first[-1].seq)
    rest, none_left = await audit.list(limit=2, starting_after=second[-1].seq)
    assert [e.seq for e in first + second + rest] == [1, 2, 3, 4, 5]
    assert (more, more_after, none_left) == (True, True, False)

    about, _ = await audit.list(subject_type="invoice", subject_id="inv_2")
    assert [(e.seq, e.action) for e in about] == [(2, "invoice.finalized"), (5, "invoice.posted")]
    by_corr, _ = await audit.list(correlation_id="corr-3")
    assert [e.seq for e in by_corr] == [3]
    posted, _ = await audit.list(action="invoice.posted")
    assert [e.seq for e in posted] == [5]
    assert (await audit.verify()).entries == 5


async def test_a_missing_head_is_recreated_only_for_an_empty_log(sessions):
    await _sql(sessions, "DELETE FROM audit_head")
    assert (await verify(sessions)).ok  # nothing recorded yet, nothing lost
    await _append(sessions, 2)
    assert (await verify(sessions)).entries == 2

    await _sql(sessions, "DELETE FROM audit_head")
    result = await verify(sessions)
    assert (result.ok, result.problem.kind) == (False, "head_missing")
    with pytest.raises(AuditLogCorrupt):
        await _append(sessions, 1, start=3)


def _fields(entry) -> dict:
    return {f: getattr(entry, f) for f in entry.__struct_fields__}
