"""After every case that arrives, a node asks which of its materials are still to fetch: an
index answers that, on SQLite and on PostgreSQL, so the work per case stays the same however many
cases the node has had (before, every row of case_materials was read each time)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from federation.store import Tx
from node.cases.materials import WANTED, _wanted
from node.cases.models import CaseMaterialRow
from node.storage import open_database

pytestmark = pytest.mark.asyncio

PRESENT = 3000


def _fill(tx: Tx) -> None:
    for i in range(PRESENT):
        tx.session.add(
            CaseMaterialRow(
                case_id=f"case-{i}",
                kind="id-card",
                sha256=f"{i:064x}",
                size=1,
                format="pdf",
                present=True,
                added_at_us=1,
            )
        )
    missing = "ab" * 32
    # Two cases with the same missing file (fetched once), and one missing file nobody can send.
    for case_id, fetch_from, digest in [
        ("case-a", "cn-320509", missing),
        ("case-b", "cn-320509", missing),
        ("case-c", "", "cd" * 32),
    ]:
        tx.session.add(
            CaseMaterialRow(
                case_id=case_id,
                kind="bank-card",
                sha256=digest,
                size=7,
                format="png",
                fetch_from=fetch_from,
                added_at_us=1,
            )
        )


async def test_the_materials_still_to_fetch_are_found_through_an_index(db_url: str) -> None:
    db = await asyncio.to_thread(open_database, db_url)
    try:
        await db.write(_fill)
        wanted = await db.read(_wanted)
        assert wanted == [("ab" * 32, 7, "cn-320509", "case-a")]

        engine = db.read_engine
        query = str(WANTED.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                plan = " ".join(
                    str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
                )
            else:  # whether the index can serve the query at all: a sequential scan is ruled out
                connection.execute(text("ANALYZE case_materials"))
                connection.execute(text("SET enable_seqscan = off"))
                plan = " ".join(str(row[0]) for row in connection.execute(text(f"EXPLAIN {query}")))
        assert "ix_case_materials_wanted" in plan, f"the fetcher's query reads the whole table: {plan}"
    finally:
        await asyncio.to_thread(db.close)
