"""The transaction runner, on SQLite and on PostgreSQL: group commit, savepoints, callbacks."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from federation.store import Database, Tx
from node.storage import open_database

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def db(db_url: str):  # type: ignore[no-untyped-def]
    database = await asyncio.to_thread(open_database, db_url)
    await database.write(
        lambda tx: tx.session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    )
    yield database
    await asyncio.to_thread(database.close)


def insert(note_id: int, body: str = "x"):  # type: ignore[no-untyped-def]
    def job(tx: Tx) -> int:
        tx.session.execute(text("INSERT INTO notes (id, body) VALUES (:i, :b)"), {"i": note_id, "b": body})
        return note_id

    return job


async def notes(db: Database) -> list[int]:
    return list(await db.read(lambda s: s.execute(text("SELECT id FROM notes ORDER BY id")).scalars().all()))


async def test_concurrent_writes_all_commit(db: Database) -> None:
    results = await asyncio.gather(*[db.write(insert(i)) for i in range(200)])
    assert results == list(range(200))
    assert await notes(db) == list(range(200))


async def test_a_failing_job_rolls_back_alone(db: Database) -> None:
    def half_then_fail(tx: Tx) -> None:
        tx.session.execute(text("INSERT INTO notes (id, body) VALUES (1000, 'lost')"))
        raise ValueError("the clerk's input was wrong")

    outcomes = await asyncio.gather(
        db.write(insert(1)), db.write(half_then_fail), db.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError)
    assert await notes(db) == [1, 2]


async def test_a_failing_job_alone_in_its_group_rolls_back(db: Database) -> None:
    def fail(tx: Tx) -> None:
        tx.session.execute(text("INSERT INTO notes (id, body) VALUES (7, 'lost')"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.write(fail)
    assert await notes(db) == []


async def test_after_commit_runs_only_for_committed_jobs_and_rollback_hooks_for_the_rest(
    db: Database,
) -> None:
    events: list[str] = []

    def good(tx: Tx) -> None:
        tx.session.execute(text("INSERT INTO notes (id) VALUES (1)"))
        tx.after_commit(lambda: events.append("committed"))
        tx.on_rollback(lambda: events.append("never"))

    def bad(tx: Tx) -> None:
        tx.after_commit(lambda: events.append("never"))
        tx.on_rollback(lambda: events.append("rolled back"))
        raise KeyError("x")

    await asyncio.gather(db.write(good), db.write(bad), return_exceptions=True)
    assert sorted(events) == ["committed", "rolled back"]


async def test_a_savepoint_inside_a_job_unwinds_only_its_part(db: Database) -> None:
    def refused_part(tx: Tx) -> None:
        with tx.savepoint():
            tx.session.execute(text("INSERT INTO notes (id) VALUES (2)"))
            raise ValueError("refused")

    def job(tx: Tx) -> None:
        tx.session.execute(text("INSERT INTO notes (id) VALUES (1)"))
        with pytest.raises(ValueError, match="refused"):
            refused_part(tx)
        tx.session.execute(text("INSERT INTO notes (id) VALUES (3)"))

    await db.write(job)
    assert await notes(db) == [1, 3]


async def test_writes_from_a_thread_without_an_event_loop(db: Database) -> None:
    assert await asyncio.to_thread(db.write_blocking, insert(5)) == 5
    assert await notes(db) == [5]


async def test_a_write_at_a_given_time_sees_that_time_as_now(db: Database) -> None:
    seen = await db.write(lambda tx: tx.now_us, at_us=1_700_000_000_000_000)
    assert seen == 1_700_000_000_000_000
    assert await db.write(lambda tx: tx.now_us) > 1_700_000_000_000_000, "the clock again without it"


def insert_by_driver(note_id: int):  # type: ignore[no-untyped-def]
    def job(tx: Tx) -> int:
        tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (note_id, "driver"))
        return note_id

    return job


async def test_driver_statements_share_the_transaction_and_its_group_commit(db: Database) -> None:
    def fail_after_driver_insert(tx: Tx) -> None:
        tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (500, "lost"))
        raise ValueError("refused after writing")

    outcomes = await asyncio.gather(
        db.write(insert_by_driver(1)),
        db.write(fail_after_driver_insert),
        db.write(insert(2)),
        db.write(insert_by_driver(3)),
        return_exceptions=True,
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2:] == [2, 3]
    assert await notes(db) == [1, 2, 3]


async def test_driver_statements_in_a_savepoint_unwind_with_it(db: Database) -> None:
    def refused_part(tx: Tx) -> None:
        with tx.savepoint():
            tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (2, "unwound"))
            raise ValueError("refused")

    def job(tx: Tx) -> list[int]:
        tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (1, "kept"))
        with pytest.raises(ValueError, match="refused"):
            refused_part(tx)
        tx.sql.many("INSERT INTO notes (id, body) VALUES (?, ?)", [(3, "a"), (4, "b")])
        return [row[0] for row in tx.sql.rows("SELECT id FROM notes WHERE id > ? ORDER BY id", (0,))]

    assert await db.write(job) == [1, 3, 4]
    assert await notes(db) == [1, 3, 4]


async def test_a_driver_error_rolls_back_its_job_and_the_writer_goes_on(db: Database) -> None:
    def duplicate(tx: Tx) -> None:
        tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (10, "x"))
        tx.sql.run("INSERT INTO notes (id, body) VALUES (?, ?)", (10, "y"))

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await db.write(duplicate)
    assert await db.write(insert_by_driver(11)) == 11
    assert await notes(db) == [11]


async def test_a_postgresql_connection_closed_by_the_server_is_made_anew_before_the_next_write(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = await asyncio.to_thread(open_database, postgres_url)
    try:
        await database.write(
            lambda tx: tx.session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        )
        writer_pid = await database.write(lambda tx: tx.sql.rows("SELECT pg_backend_pid()")[0][0])
        # The server ends the writer's session, as an administrator or an idle timeout would.
        killed = await database.read(
            lambda s: s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": writer_pid}).scalar()
        )
        assert killed
        monkeypatch.setattr("federation.store._PING_AFTER_IDLE", 0.0)
        assert await database.write(insert_by_driver(1)) == 1, "the clerk's next action goes through"
        assert await notes(database) == [1]
    finally:
        await asyncio.to_thread(database.close)
