"""Time-limit jobs live in the scheduler's persistent job store: scheduled before a stop, they
fire after a restart and record the event on the case book of the running node."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import create_engine

from federation.clock import now_us
from node.cases import timers
from tests.utils import eventually


class RecordingBook:
    """Stands in for a node's CaseBook: records what the timers ask of it."""

    node_id = "cn-341522"

    def __init__(self) -> None:
        self.marked: list[tuple[str, str]] = []

    async def mark(self, case_id: str, action: str) -> bool:
        self.marked.append((case_id, action))
        return True


def scheduler(path: Path) -> AsyncIOScheduler:
    engine = create_engine(f"sqlite:///{path}")
    return AsyncIOScheduler(jobstores={"persistent": SQLAlchemyJobStore(engine=engine)})


async def test_time_limit_jobs_survive_a_restart_and_fire(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    first = scheduler(store)
    first.start(paused=True)
    due = date.today().isoformat()
    timers.schedule(first, "cn-341522", "CASE1", due, overdue_at_us=now_us() + 1_500_000)
    assert {job.id for job in first.get_jobs()} == {"case-remind-CASE1", "case-overdue-CASE1"}
    first.shutdown(wait=False)  # the node stops before the due moment

    book = RecordingBook()
    timers.register(book)  # type: ignore[arg-type]
    second = scheduler(store)
    second.start()
    try:
        await eventually(
            lambda: asyncio.sleep(0, ("CASE1", "overdue") in book.marked),
            timeout=30,
            what="the overdue job to fire after the restart",
        )
        assert ("CASE1", "remind") in book.marked
        assert second.get_jobs() == [], "date jobs are done once they fired"
    finally:
        second.shutdown(wait=False)
        timers.unregister(book)  # type: ignore[arg-type]
