"""Working days with Chinese public holidays and adjusted working days (chinese-calendar)."""

from __future__ import annotations

from datetime import date

from node.cases import workdays


def test_national_day_week_is_skipped() -> None:
    # 2025: 1-8 October off; Sunday 28 September and Saturday 11 October are working days.
    assert workdays.add_working_days(date(2025, 9, 30), 1) == date(2025, 10, 9)
    assert workdays.add_working_days(date(2025, 9, 30), 3) == date(2025, 10, 11)


def test_an_adjusted_weekend_day_counts() -> None:
    assert workdays.add_working_days(date(2025, 9, 26), 1) == date(2025, 9, 28)


def test_ordinary_weeks_skip_weekends() -> None:
    assert workdays.add_working_days(date(2025, 11, 21), 5) == date(2025, 11, 28)


def test_a_year_without_holiday_data_counts_weekends_only() -> None:
    assert workdays.add_working_days(date(2099, 1, 2), 1) == date(2099, 1, 5)


def test_overdue_begins_at_the_end_of_the_due_day_in_china() -> None:
    end = workdays.end_of(date(2025, 10, 9))
    assert workdays.china_date(end) == date(2025, 10, 9)
    assert workdays.china_date(end + 1_000_000) == date(2025, 10, 10)
