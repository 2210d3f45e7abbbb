"""The message log, on SQLite and PostgreSQL: chaining, checkpoints, append-only, tampering found."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from federation.identity import NodeIdentity
from federation.log import Entry, MessageLog, verify_log
from federation.store import Database, Tx
from node.storage import open_database

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def setup(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    database = await asyncio.to_thread(open_database, db_url)
    identity = NodeIdentity.create(tmp_path / "keys", "cn-320509", "吴江")
    log = MessageLog("cn-320509")
    yield database, identity, log
    await asyncio.to_thread(database.close)


def entry(n: int) -> Entry:
    return Entry(
        "out", "envelope", f"body {n}".encode(), peer="cn-341522", message_id=f"m{n:025d}", kind="ping"
    )


async def append(db: Database, log: MessageLog, start: int, count: int) -> None:
    await db.write(lambda tx: log.append_many(tx, [entry(n) for n in range(start, start + count)]))


async def verify(db: Database, identity: NodeIdentity):  # type: ignore[no-untyped-def]
    return await db.read(lambda s: verify_log(s, identity.keys))


async def unguard(db: Database) -> None:
    """What someone with database access could do: switch the append-only guard off."""
    if db.is_sqlite:
        statements = ["DROP TRIGGER log_entries_no_update", "DROP TRIGGER log_entries_no_delete"]
    else:
        statements = ["DROP TRIGGER log_entries_append_only ON log_entries"]

    def run(tx: Tx) -> None:
        for statement in statements:
            tx.session.execute(text(statement))

    await db.write(run)


async def test_a_clean_log_verifies_with_its_checkpoints(setup) -> None:  # type: ignore[no-untyped-def]
    db, identity, log = setup
    await append(db, log, 1, 30)
    assert await db.write(lambda tx: log.checkpoint(tx, identity.signer)) == 30
    await append(db, log, 31, 10)
    assert await db.write(lambda tx: log.checkpoint(tx, identity.signer)) == 40
    assert await db.write(lambda tx: log.checkpoint(tx, identity.signer)) is None, (
        "nothing new, nothing signed"
    )
    result = await verify(db, identity)
    assert result.ok, result.problem
    assert (result.entries, result.checkpoints, result.head.seq) == (40, 2, 40)
    assert result.head == log.head


async def test_a_rolled_back_job_leaves_no_gap_in_the_chain(setup) -> None:  # type: ignore[no-untyped-def]
    db, identity, log = setup
    await append(db, log, 1, 3)

    def append_then_fail(tx: Tx) -> None:
        log.append(tx, entry(99))
        raise ValueError("refused")

    await asyncio.gather(db.write(append_then_fail), append(db, log, 4, 2), return_exceptions=True)
    with pytest.raises(ValueError, match="refused"):
        await db.write(append_then_fail)
    await append(db, log, 6, 2)
    result = await verify(db, identity)
    assert result.ok, result.problem
    assert result.entries == 7


async def test_the_log_refuses_updates_and_deletes(setup) -> None:  # type: ignore[no-untyped-def]
    db, _, log = setup
    await append(db, log, 1, 2)
    for statement in (
        "UPDATE log_entries SET peer = 'x' WHERE seq = 1",
        "DELETE FROM log_entries WHERE seq = 2",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            await db.write(lambda tx, s=statement: tx.session.execute(text(s)))


async def test_an_edited_entry_is_named(setup) -> None:  # type: ignore[no-untyped-def]
    db, identity, log = setup
    await append(db, log, 1, 10)
    await unguard(db)
    await db.write(
        lambda tx: tx.session.execute(text("UPDATE log_entries SET record = :r WHERE seq = 6"), {"r": b"x"})
    )
    result = await verify(db, identity)
    assert result.problem is not None
    assert result.problem.seq == 6


async def test_a_deleted_entry_is_named(setup) -> None:  # type: ignore[no-untyped-def]
    db, identity, log = setup
    await append(db, log, 1, 10)
    await unguard(db)
    await db.write(lambda tx: tx.session.execute(text("DELETE FROM log_entries WHERE seq = 4")))
    result = await verify(db, identity)
    assert result.problem is not None
    assert result.problem.seq == 4
    assert "missing" in result.problem.what


async def test_a_cut_tail_is_caught_by_the_checkpoint(setup) -> None:  # type: ignore[no-untyped-def]
    db, identity, log = setup
    await append(db, log, 1, 10)
    await db.write(lambda tx: log.checkpoint(tx, identity.signer))
    await unguard(db)
    await db.write(lambda tx: tx.session.execute(text("DELETE FROM log_entries WHERE seq > 7")))
    result = await verify(db, identity)
    assert result.problem is not None
    assert result.problem.seq == 8
    assert "removed from the end" in result.problem.what
