"""The questions a node asks for every case, answered through an index on SQLite and on
PostgreSQL, so that the work per case stays the same however many cases the node has had:
which materials are still to fetch (after every case that arrives; before, every row of
case_materials was read), and the next case number (at every case opened; before, a prefix
match read every case number stored)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from federation.store import Tx
from node.cases.book import last_number_query, next_number
from node.cases.materials import WANTED, _wanted
from node.cases.models import CaseMaterialRow, CaseRow
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

        plan = _plan(db.read_engine, WANTED, "case_materials")
        assert "ix_case_materials_wanted" in plan, f"the fetcher's query reads the whole table: {plan}"
    finally:
        await asyncio.to_thread(db.close)


def _plan(engine: Any, query: Any, table: str) -> str:
    """The database's plan for a query; on PostgreSQL with sequential scans ruled out, so that it
    shows whether an index can serve the query at all."""
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        connection.execute(text(f"ANALYZE {table}"))
        connection.execute(text("SET enable_seqscan = off"))
        return " ".join(str(row[0]) for row in connection.execute(text(f"EXPLAIN {sql}")))


def _cases(numbers: list[str]) -> Callable[[Tx], None]:
    def insert(tx: Tx) -> None:
        for i, number in enumerate(numbers):
            tx.session.add(
                CaseRow(
                    case_id=f"case-{i}",
                    number=number,
                    item_code="pension-balance-withdrawal",
                    item_name="养老保险",
                    accepting_node="cn-320509",
                    holder="cn-341522",
                    state="submitted",
                    applicant_name="陈添荣",
                    applicant_id="341522195801011234",
                    applicant_phone="",
                    form="{}",
                    catalog_version=1,
                    opened_at_us=1,
                    updated_at_us=1,
                    due_date="",
                    result="",
                )
            )

    return insert


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


async def test_the_next_case_number_is_found_through_the_index_of_numbers(db_url: str) -> None:
    db = await asyncio.to_thread(open_database, db_url)
    try:
        # Today's cases here, yesterday's, and another division's today (received from a peer).
        numbers = [f"320509-20261201-{n:06d}" for n in range(1, 400)]
        numbers += [f"320509-20261202-{n:06d}" for n in (1, 2, 7)]
        numbers += [f"341522-20261202-{n:06d}" for n in range(1, 50)]
        await db.write(_cases(numbers))
        # 03:00 UTC on the 2nd is 11:00 in Beijing; 17:00 UTC on the 1st is already 01:00 on the 2nd.
        for moment in (datetime(2026, 12, 2, 3, 0, tzinfo=UTC), datetime(2026, 12, 1, 17, 0, tzinfo=UTC)):
            us = _us(moment)
            assert await db.read(lambda s, us=us: next_number(s, "320509", us)) == "320509-20261202-000008"
        first = _us(datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
        assert await db.read(lambda s: next_number(s, "320509", first)) == "320509-20261203-000001"

        plan = _plan(db.read_engine, last_number_query("320509-20261202-"), "cases")
        served = "(number>" in plan if db.read_engine.dialect.name == "sqlite" else "Index Cond" in plan
        assert served, f"the next case number is looked for through every number: {plan}"
    finally:
        await asyncio.to_thread(db.close)
