"""A peer's backlog (pending, parked, oldest pending) read through the outbox's index on
(peer, state), on SQLite and PostgreSQL: the gauges ask every 15 s, and the outbox keeps every
message ever delivered, so a count over the whole table would grow with the node's age."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from federation.outbox import Backlog, Outbox, backlog_query
from federation.store import Tx
from node.storage import open_database

pytestmark = pytest.mark.asyncio

_ROW = (
    "INSERT INTO outbox (id, message_id, peer, kind, case_id, case_seq, envelope_seq, state, attempts, "
    "created_at_us, next_attempt_us, outcome, outcome_code, outcome_reason, last_error) "
    "VALUES (?, ?, ?, 'ping', '', 0, ?, ?, 0, ?, ?, '', 0, '', '')"
)


def _fill(tx: Tx) -> None:
    rows = []
    for i in range(1, 4001):  # delivered long ago, to two peers
        rows.append((i, f"m{i:025d}", "cn-341522" if i % 2 else "cn-341500", i, "delivered", i, i))
    for i, (peer, state, at) in enumerate(
        [
            ("cn-341522", "pending", 7_000),
            ("cn-341522", "pending", 5_000),
            ("cn-341522", "parked", 4_500),
            ("cn-341500", "parked", 6_000),
        ],
        start=5000,
    ):
        rows.append((i, f"m{i:025d}", peer, i, state, at, at))
    tx.sql.many(_ROW, rows)


async def test_a_peers_backlog_is_counted_through_the_index(db_url: str) -> None:
    db = await asyncio.to_thread(open_database, db_url)
    try:
        await db.write(_fill)
        assert await db.read(lambda s: Outbox.backlog(s, "cn-341522")) == Backlog(2, 1, 5_000)
        assert await db.read(lambda s: Outbox.backlog(s, "cn-341500")) == Backlog(0, 1, None)
        assert await db.read(lambda s: Outbox.backlog(s, "cn-000000")) == Backlog()

        engine = db.read_engine
        sql = str(
            backlog_query("cn-341522").compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        )
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                shown = " ".join(str(r[-1]) for r in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            else:  # whether the index can serve it at all: sequential scans ruled out
                connection.execute(text("ANALYZE outbox"))
                connection.execute(text("SET enable_seqscan = off"))
                shown = " ".join(str(r[0]) for r in connection.execute(text(f"EXPLAIN {sql}")))
        assert "ix_outbox_peer_state_id" in shown, f"the backlog is counted over the whole outbox: {shown}"
    finally:
        await asyncio.to_thread(db.close)
