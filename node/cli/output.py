"""How the `tongban` command talks: tables for people, JSON for scripts, clear errors.

Every command takes `--home DIR` (else $TONGBAN_HOME, else ~/.tongban) and `--json`. With
`--json` a command prints one JSON document, or JSON lines for lists; without, readable tables.
Failures print one line on stderr (`tongban: error: ...`) and exit non-zero.

Times are shown in Beijing time (UTC+8), whatever zone the machine is set to: it is the time of
the service halls, of the receipts they hand out and of the working days that due dates count,
and a server kept on UTC would otherwise show a case received at 11:58 on its receipt as 03:58 in
its history. A time typed without a zone means Beijing time too. JSON gives UTC (ISO 8601, `Z`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click
from google.protobuf import timestamp_pb2
from rich import box
from rich.console import Console
from rich.table import Table

from federation.clock import CHINA
from node.home import Home, HomeError, resolve_home

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure with a message for the operator; exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"tongban: error: {self.message}", err=True)


@dataclass
class Output:
    as_json: bool
    console: Console

    def document(self, data: dict[str, Any]) -> None:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))

    def lines(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            click.echo(json.dumps(item, ensure_ascii=False, default=str))

    def table(self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        if title:
            click.echo(title)
        table = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*["" if cell is None else str(cell) for cell in row])
        self._emit(table)

    def fields(self, title: str | None, pairs: Sequence[tuple[str, Any]]) -> None:
        if title:
            click.echo(title)
        table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(key, "" if value is None else str(value))
        self._emit(table)

    def say(self, text: str) -> None:
        click.echo(text)

    def _emit(self, renderable: Any) -> None:
        with self.console.capture() as captured:
            self.console.print(renderable)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


@dataclass
class Context:
    home: Home
    out: Output


def common(function: F) -> F:
    """Add --home and --json to a command and hand it a Context as its first argument."""

    @click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (one document, or JSON lines for lists)."
    )
    @click.option(
        "--home",
        "home",
        type=click.Path(file_okay=False),
        envvar="TONGBAN_HOME",
        help="The node's home folder (default: $TONGBAN_HOME, else ~/.tongban).",
    )
    @functools.wraps(function)
    def wrapper(*args: Any, home: str | None, as_json: bool, **kwargs: Any) -> Any:
        console = Console(soft_wrap=False, highlight=False, width=None if sys.stdout.isatty() else 160)
        context = Context(Home(resolve_home(home)), Output(as_json, console))
        try:
            return function(context, *args, **kwargs)
        except HomeError as error:
            raise CliError(str(error)) from None
        except _api_error() as error:
            raise CliError(f"{error.message} [{error.code.name}]") from None

    return wrapper  # type: ignore[return-value]


def _api_error() -> type[Any]:
    from node.api.client import ApiError

    return ApiError


# -- formatting ---------------------------------------------------------------------------------


def when(stamp: timestamp_pb2.Timestamp | None, *, present: bool = True) -> str:
    """A timestamp in Beijing time, or '' when unset."""
    if stamp is None or not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return ""
    return shown_us(stamp.seconds * 1_000_000 + stamp.nanos // 1000)


def shown_us(us: int, *, milliseconds: bool = False) -> str:
    """Microseconds since the epoch in Beijing time, to the second (or millisecond); '' for 0."""
    if not us:
        return ""
    moment = datetime.fromtimestamp(us / 1e6, tz=CHINA)
    if milliseconds:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def typed_time(moment: datetime) -> datetime:
    """A time as typed: one without a zone is Beijing time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA)


def iso(stamp: timestamp_pb2.Timestamp | None, *, present: bool = True) -> str | None:
    """A timestamp as ISO 8601 UTC for JSON, or None when unset."""
    if stamp is None or not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(stamp: timestamp_pb2.Timestamp | None, *, present: bool = True) -> str:
    """'12s ago', '3m ago'... for last-contact columns."""
    if stamp is None or not present or stamp.seconds == 0:
        return "never"
    seconds = max(0.0, datetime.now().timestamp() - stamp.seconds)
    return f"{duration(seconds)} ago"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '7d' (or plain seconds) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise CliError(f"{text!r} is not a duration; write for example 90s, 15m, 1h or 7d") from None


def short_fingerprint(hex_fingerprint: str) -> str:
    return " ".join(hex_fingerprint[i : i + 4] for i in range(0, min(len(hex_fingerprint), 64), 4))
