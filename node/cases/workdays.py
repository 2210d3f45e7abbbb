"""Time limits in working days (办理时限): weekends and Chinese public holidays excluded,
adjusted working days (调休) included, from the `chinese-calendar` holiday library.

The library carries the State Council's published arrangements year by year. For a year it
does not know yet, the count falls back to weekends only and logs a warning saying to upgrade
it: a due date is never refused for want of a holiday table.

Dates are those of China Standard Time (UTC+8), where the service halls are.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import chinese_calendar

from federation.clock import CHINA, from_datetime, to_datetime

# When a due date's day ends, and when the reminder is given: on the due date, at the start of
# office hours.
DAY_ENDS = time(23, 59, 59)
REMIND_AT = time(9, 0)

_log = logging.getLogger("tongban.cases.workdays")
_warned: set[int] = set()


def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            _log.warning(
                "chinese-calendar has no holiday arrangements for %d; counting weekends only "
                "(upgrade chinese-calendar once the State Council publishes them)",
                day.year,
            )
        return day.weekday() < 5


def add_working_days(start: date, days: int) -> date:
    """The date `days` working days after `start` (the day of acceptance does not count)."""
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_workday(day):
            counted += 1
    return day


def china_date(us: int) -> date:
    return to_datetime(us).astimezone(CHINA).date()


def due_date(accepted_at_us: int, days: int) -> date:
    return add_working_days(china_date(accepted_at_us), days)


def end_of(day: date) -> int:
    """Microseconds at the end of `day` in China: when a case due that day becomes overdue."""
    return from_datetime(datetime.combine(day, DAY_ENDS, tzinfo=CHINA).astimezone(UTC))


def reminder_at(day: date) -> int:
    return from_datetime(datetime.combine(day, REMIND_AT, tzinfo=CHINA).astimezone(UTC))
