"""Time limits on persistent APScheduler jobs: a reminder on the due date, overdue at its end.

When the holder accepts a case, two jobs go into the scheduler's "persistent" job store (a
table in the node's database), so they survive restarts: a missed one runs at the next start
(misfire grace of an hour, coalesced). A job names the node and the case, not an object: at
run time it finds the running node's case book here, and records a `remind` or `overdue`
event, which reaches the accepting node like any other. A job for a case that has moved on
(completed, transferred, withdrawn) does nothing.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from federation.clock import now_us, to_datetime
from node.cases import workdays

if TYPE_CHECKING:
    from node.cases.book import CaseBook

_log = logging.getLogger("tongban.cases.timers")
_books: dict[str, CaseBook] = {}


def register(book: CaseBook) -> None:
    _books[book.node_id] = book


def unregister(book: CaseBook) -> None:
    _books.pop(book.node_id, None)


async def fire(node_id: str, case_id: str, action: str) -> None:
    """The job function (referenced by name in the job store)."""
    book = _books.get(node_id)
    if book is None:
        _log.warning("no running case book for %s; %s of %s skipped", node_id, action, case_id)
        return
    if await book.mark(case_id, action):
        _log.info("case %s: %s", case_id, action)


def schedule(
    scheduler: Any, node_id: str, case_id: str, due: str, *, overdue_at_us: int | None = None
) -> None:
    """Reminder and overdue jobs for a case due on `due` (YYYY-MM-DD)."""
    day = date.fromisoformat(due)
    overdue_at = overdue_at_us if overdue_at_us is not None else workdays.end_of(day)
    remind_at = min(workdays.reminder_at(day), overdue_at)
    for action, at in (("remind", remind_at), ("overdue", overdue_at)):
        scheduler.add_job(
            "node.cases.timers:fire",
            "date",
            run_date=to_datetime(max(at, now_us())),
            args=[node_id, case_id, action],
            id=f"case-{action}-{case_id}",
            jobstore="persistent",
            replace_existing=True,
            misfire_grace_time=None,
        )
