"""Time as the federation stores and signs it: integer microseconds since the Unix epoch, UTC.

Integers sort, compare and index the same way on SQLite and PostgreSQL and never lose a time
zone; conversion to `datetime` happens only at the edges (the wire, the screen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone

MICROS = 1_000_000
# China Standard Time (UTC+8; no daylight saving since 1991): the time of the service halls, of
# the dates on their receipts, case numbers and due dates, and of the times people are shown.
CHINA = timezone(timedelta(hours=8), "CST")

# How long each step of stopping a node may take before it is logged and left behind.
STOP_SECONDS = 5.0

_log = logging.getLogger("tongban.federation.clock")


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_datetime(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(us / MICROS, tz=UTC)


def from_datetime(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


def iso(us: int | None) -> str:
    """An ISO 8601 UTC timestamp with second precision, or '' for None/0."""
    if not us:
        return ""
    return to_datetime(us).strftime("%Y-%m-%dT%H:%M:%SZ")


async def within(seconds: float, step: Awaitable[object], what: str) -> bool:
    """Await one shutdown step for at most `seconds`; on overrun log what hung and go on.

    A node asked to stop must stop: one stuck step (a peer that never closes its stream, a
    library that never resolves a future) must not keep the others from running.
    """
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        _log.warning("shutdown: %s did not finish within %.0f s; going on without it", what, seconds)
        return False
    return True
