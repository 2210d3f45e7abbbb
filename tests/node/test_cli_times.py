"""The command line shows and reads times in Beijing time, whatever zone the machine keeps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from node.cli.log import _time
from node.cli.output import shown_us


@pytest.fixture(autouse=True)
def machine_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine kept on another zone than the service halls'."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def test_a_moment_is_shown_in_beijing_time() -> None:
    assert shown_us(_us("2026-12-02T03:58:11+00:00")) == "2026-12-02 11:58:11"
    assert shown_us(_us("2026-12-31T16:30:00.250+00:00"), milliseconds=True) == "2027-01-01 00:30:00.250"
    assert shown_us(0) == "", "an unset time shows as nothing"


def test_a_time_typed_without_a_zone_is_beijing_time() -> None:
    assert _time("2026-11-22T09:30") == _us("2026-11-22T01:30:00+00:00")
    assert _time("2026-11-22") == _us("2026-11-21T16:00:00+00:00"), "a day starts at midnight in Beijing"
    assert _time("2026-11-22T09:30+00:00") == _us("2026-11-22T09:30:00+00:00"), "a zone given is kept"
    assert abs(_time("2h") - (datetime.now(UTC).timestamp() - 7200) * 1_000_000) < 60_000_000
