"""`tongban log`: list, show, verify, export, trace, replay and rebuild the message log.

Where the entries come from: with `--file BUNDLE`, a bundle (`tongban log export`); else, when
the node of `--home` runs, its local API; else the stopped node's database, opened read-only
(the one case where the command reads a database itself, see DESIGN.md §2). Replay needs the
running node (it sends with the node's TLS identity); rebuild runs on a stopped home or through
the running node.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from node.cli.output import CliError, Context, common, shown_us

# -- where the entries are --------------------------------------------------------------------


def _running(ctx: Context) -> bool:
    info = ctx.home.run_info()
    if not info or not info.get("pid"):
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return True


@dataclass
class Offline:
    """A stopped node's home: its database read-only, its public key history."""

    session: Any
    keys: Any
    node_id: str
    engine: Any


@contextlib.contextmanager
def offline(ctx: Context) -> Iterator[Offline]:
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from federation.identity import HISTORY_FILE, _history_from_json
    from node.config import NodeConfig
    from node.storage import normalize_url

    home = ctx.home
    if not home.exists():
        raise CliError(f"{home.root} is not a node home (no node.toml); give --home, or --file BUNDLE")
    config = NodeConfig.load(home.config_path)
    history_path = home.keys / HISTORY_FILE
    if not history_path.exists():
        raise CliError(
            f"{history_path} is missing: the node's public key history is needed to check signatures"
        )
    keys = _history_from_json(history_path.read_bytes())
    if config.storage.url:
        engine = create_engine(normalize_url(config.storage.url))
    else:
        if not home.db_path.exists():
            raise CliError(f"{home.db_path} does not exist: is {home.root} a node home?")
        # SQLAlchemy passes URI parameters on only when the URL itself says uri=true.
        engine = create_engine(f"sqlite:///file:{home.db_path}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            yield Offline(session, keys, config.node.id, engine)
    finally:
        engine.dispose()


def _bundle(path: str) -> Any:
    from federation import wire

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read the bundle {path}: {error.strerror}") from None
    try:
        return wire.decode_bundle(data)
    except wire.WireError as error:
        raise CliError(f"{path}: {error}") from None


def _time(text: str | None) -> int:
    """An ISO date/time (Beijing time unless it says otherwise), or a duration ago ('2h'), as µs."""
    from node.cli.output import parse_duration, typed_time

    if not text:
        return 0
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return int((time.time() - parse_duration(text)) * 1_000_000)
        except CliError:
            raise CliError(
                f"{text!r} is not a time: write 2026-11-22, 2026-11-22T09:30, or a duration ago like 2h"
            ) from None
    return int(typed_time(moment).timestamp() * 1_000_000)


def _filter(**options: Any) -> Any:
    from federation.audit import LogFilter

    return LogFilter(
        peer=options.get("peer") or "",
        case_id=options.get("case") or "",
        kind=options.get("kind") or "",
        direction=options.get("direction") or "",
        since_us=_time(options.get("since")),
        until_us=_time(options.get("until")),
        from_seq=options.get("from_seq") or 0,
    )


def _filter_message(flt: Any) -> Any:
    from node.api.convert import ts
    from tongban_api.v1 import log_pb2

    return log_pb2.LogFilter(
        peer=flt.peer,
        case_id=flt.case_id,
        kind=flt.kind,
        direction=flt.direction,
        since=ts(flt.since_us),
        until=ts(flt.until_us),
        from_seq=flt.from_seq,
    )


def _view(message: Any) -> Any:
    from federation.audit import EntryView

    def us(stamp: Any) -> int:
        return int(stamp.seconds * 1_000_000 + stamp.nanos // 1000)

    return EntryView(
        seq=message.seq,
        recorded_at_us=us(message.recorded_at),
        direction=message.direction,
        entry_type=message.entry_type,
        peer=message.peer,
        message_id=message.message_id,
        kind=message.kind,
        case_id=message.case_id,
        case_seq=message.case_seq,
        created_at_us=us(message.created_at),
        acks=message.acks,
        receipt_seq=message.receipt_seq,
        outcome=message.outcome,
        reason=message.reason,
        received_at_us=us(message.received_at),
    )


def _entries(ctx: Context, flt: Any, limit: int, file: str | None) -> tuple[list[Any], int]:
    from federation import audit

    if file:
        return audit.list_bundle(_bundle(file), flt, limit)
    if _running(ctx):
        from node.api.client import ApiClient
        from tongban_api.v1 import log_pb2

        with ApiClient(ctx.home) as client:
            reply = client.call(
                client.log.ListEntries, log_pb2.ListLogRequest(filter=_filter_message(flt), limit=limit)
            )
        return [_view(e) for e in reply.entries], reply.total
    from node.api.log import by_case_number

    with offline(ctx) as store:
        return audit.list_entries(store.session, by_case_number(store.session, flt), limit)


def _stamp(us: int) -> str:
    return shown_us(us, milliseconds=True)


def _iso(us: int) -> str | None:
    if not us:
        return None
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(view: Any) -> dict[str, Any]:
    data: dict[str, Any] = view.as_json()
    for key in ("recorded_at_us", "created_at_us", "received_at_us"):
        data[key.removesuffix("_us")] = _iso(data.pop(key))
    return data


def _what(view: Any) -> str:
    if view.entry_type == "receipt":
        return f"receipt ({view.acks} message{'s' if view.acks != 1 else ''})"
    return str(view.kind)


def _case(view: Any) -> str:
    if not view.case_id:
        return ""
    return f"{view.case_id}#{view.case_seq}" if view.case_seq else view.case_id


def _stream(client: Any, method: Any, request: Any, timeout: float | None = None) -> Iterator[Any]:
    stream: Iterator[Any] = client.stream(method, request, timeout=timeout)
    return stream


# -- commands ---------------------------------------------------------------------------------

_filters = [
    click.option("--peer", default="", help="Only entries with this peer."),
    click.option("--case", default="", help="Only entries about this case (its case ID)."),
    click.option("--kind", default="", help="Only this message kind, e.g. ping or case.submit."),
    click.option("--direction", type=click.Choice(["in", "out", "local"]), default=None),
    click.option(
        "--since",
        default=None,
        help="From this time: 2026-11-22T09:00 (Beijing time unless a zone is given), or 2h (ago).",
    ),
    click.option("--until", default=None, help="Before this time."),
]


def filters(function: Any) -> Any:
    for option in reversed(_filters):
        function = option(function)
    return function


@click.group()
def log() -> None:
    """The message log: every envelope and receipt, in and out, hash-chained and signed."""


@log.command(name="ls")
@common
@filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--file", "file", default=None, help="Read a bundle instead of the node.")
def list_entries(ctx: Context, limit: int, file: str | None, **options: Any) -> None:
    """Log entries, oldest first."""
    views, total = _entries(ctx, _filter(**options), limit, file)
    if ctx.out.as_json:
        ctx.out.lines(_json(v) for v in views)
        return
    if not views:
        ctx.out.say("no log entries match")
        return
    ctx.out.table(
        f"{total} entries" + (f" (first {len(views)})" if total > len(views) else ""),
        ["SEQ", "RECORDED", "DIR", "PEER", "WHAT", "MESSAGE ID", "CASE", "RECEIPT"],
        [
            (
                v.seq,
                _stamp(v.recorded_at_us),
                v.direction,
                v.peer,
                _what(v),
                v.message_id,
                _case(v),
                f"#{v.receipt_seq} {v.outcome}" if v.receipt_seq else "",
            )
            for v in views
        ],
    )


@log.command()
@common
@click.argument("entry")
@click.option("--file", "file", default=None, help="Read a bundle instead of the node.")
def show(ctx: Context, entry: str, file: str | None) -> None:
    """One entry (by number or message ID): decoded, its signature, receipt and chain links."""
    from federation import audit

    document: dict[str, Any]
    if file:
        detail = audit.show_bundle_entry(_bundle(file), entry.strip())
        if detail is None:
            raise CliError(f"no entry {entry!r} in {file}")
        document, signature = detail.document, detail.signature
        hashes, related, view = (detail.hash, detail.previous_hash), detail.related, detail.view
    elif _running(ctx):
        from node.api.client import ApiClient
        from tongban_api.v1 import log_pb2

        with ApiClient(ctx.home) as client:
            reply = client.call(client.log.ShowEntry, log_pb2.ShowLogRequest(entry=entry))
        document, signature = json.loads(reply.document_json), reply.signature
        hashes, related, view = (reply.hash, reply.previous_hash), list(reply.related), _view(reply.entry)
    else:
        with offline(ctx) as store:
            found = audit.show_entry(store.session, entry.strip(), store.keys)
        if found is None:
            raise CliError(f"no log entry {entry!r}: give an entry number or a message ID (`tongban log ls`)")
        document, signature = found.document, found.signature
        hashes, related, view = (found.hash, found.previous_hash), found.related, found.view
    shown = {
        **document,
        "signature": signature,
        "hash": hashes[0].hex(),
        "previous_hash": hashes[1].hex(),
        "receipt": {
            "seq": view.receipt_seq,
            "outcome": view.outcome,
            "reason": view.reason,
            "received_at": _iso(view.received_at_us),
        }
        if view.receipt_seq
        else None,
        "related_entries": related,
    }
    if ctx.out.as_json:
        ctx.out.document(shown)
        return
    click.echo(json.dumps(shown, ensure_ascii=False, indent=2))


@log.command()
@common
@click.option("--file", "file", default=None, help="Verify a bundle, with nothing else.")
@click.option(
    "--from", "from_seq", default=1, show_default=True, type=click.IntRange(1), help="Start at this entry."
)
def verify(ctx: Context, file: str | None, from_seq: int) -> None:
    """Check the hash chain, the signed checkpoints and every signature; exit 1 at the first bad entry."""
    import concurrent.futures

    from federation import audit

    started = time.monotonic()
    if not file and _running(ctx):
        result = _verify_online(ctx, from_seq)
    else:
        with concurrent.futures.ThreadPoolExecutor(2) as pool, _progress(ctx) as advance:
            if file:
                chain = audit.bundle_chain(_bundle(file))
                advance(0, chain.total)
                report = audit.verify(chain, executor=pool, progress=lambda n: advance(n, None))
            else:
                with offline(ctx) as store:
                    chain = audit.database_chain(store.session, store.keys, from_seq)
                    advance(0, chain.total)
                    report = audit.verify(chain, executor=pool, progress=lambda n: advance(n, None))
        result = {
            "ok": report.ok,
            "entries": report.entries,
            "checkpoints": report.checkpoints,
            "signatures": report.signatures,
            "head": report.head_seq,
            "problem_seq": report.problem_seq or None,
            "problem": report.problem or None,
            "seconds": round(time.monotonic() - started, 3),
        }
    _report(ctx, result, file or str(ctx.home.root))


def _verify_online(ctx: Context, from_seq: int) -> dict[str, Any]:
    from node.api.client import ApiClient
    from tongban_api.v1 import log_pb2

    last: Any = None
    with ApiClient(ctx.home) as client, _progress(ctx) as advance:
        seen = 0
        for step in _stream(
            client,
            client.log.Verify,
            log_pb2.VerifyLogRequest(from_seq=from_seq),
        ):
            advance(step.checked - seen, step.total or None)
            seen = step.checked
            last = step
    assert last is not None
    return {
        "ok": last.ok,
        "entries": last.checked,
        "checkpoints": last.checkpoints,
        "signatures": last.signatures,
        "head": last.checked + from_seq - 1 if last.ok else None,
        "problem_seq": last.problem_seq or None,
        "problem": last.problem or None,
        "seconds": round(last.elapsed_seconds, 3),
    }


@contextlib.contextmanager
def _progress(ctx: Context, what: str = "verifying") -> Iterator[Any]:
    """advance(n, total): a progress bar on a terminal (not with --json), else nothing."""
    if ctx.out.as_json or not sys.stderr.isatty():
        yield lambda n, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        what, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True)
    ) as bar:
        task = bar.add_task("verify", total=None)

        def advance(n: int, total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, n)

        yield advance


def _report(ctx: Context, result: dict[str, Any], what: str) -> None:
    if ctx.out.as_json:
        ctx.out.document(result)
    elif result["ok"]:
        ctx.out.say(
            f"{what}: the log holds: {result['entries']} entries, {result['signatures']} signatures and "
            f"{result['checkpoints']} signed checkpoints verified in {result['seconds']} s"
        )
    if not result["ok"]:
        raise CliError(f"{what}: entry {result['problem_seq']} is bad: {result['problem']}")


@log.command()
@common
@filters
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="The bundle to write."
)
def export(ctx: Context, output: str, **options: Any) -> None:
    """Write a self-contained bundle: entries, receipts, keys and checkpoints (verifies offline)."""
    from federation import audit, wire
    from federation.clock import now_us

    flt = _filter(**options)
    if _running(ctx):
        from node.api.client import ApiClient
        from tongban_api.v1 import log_pb2

        with ApiClient(ctx.home) as client:
            data = b"".join(
                chunk.data
                for chunk in _stream(
                    client, client.log.Export, log_pb2.ExportLogRequest(filter=_filter_message(flt))
                )
            )
    else:
        from federation.identity import NodeIdentity
        from node.api.log import by_case_number

        with offline(ctx) as store:
            signer = NodeIdentity.load(ctx.home.keys, store.node_id, "").signer
            bundle = audit.export(
                store.session, store.keys, by_case_number(store.session, flt), now_us=now_us(), signer=signer
            )
        data = wire.bundle_bytes(bundle)
    bundle = wire.decode_bundle(data)
    Path(output).write_bytes(data)
    summary = {
        "file": output,
        "bytes": len(data),
        "entries": len(bundle.entries),
        "selected": len(bundle.selected),
        "checkpoints": len(bundle.checkpoints),
        "first_seq": bundle.entries[0].seq if bundle.entries else None,
        "last_seq": bundle.entries[-1].seq if bundle.entries else None,
        "selection": bundle.selection,
    }
    if ctx.out.as_json:
        ctx.out.document(summary)
        return
    ctx.out.say(
        f"wrote {output}: {summary['selected']} chosen entries ({summary['entries']} with the chain between "
        f"checkpoints), {summary['checkpoints']} checkpoints, {len(data):,} bytes"
    )


@log.command()
@common
@click.argument("case")
@click.option("--file", "file", default=None, help="Read a bundle instead of the node.")
def trace(ctx: Context, case: str, file: str | None) -> None:
    """Every message of a case, in order, with its receipt and timings."""
    from federation.audit import LogFilter

    views, _ = _entries(ctx, LogFilter(case_id=case), 100_000, file)
    if ctx.out.as_json:
        ctx.out.lines(_json(v) for v in views)
        return
    if not views:
        hint = " (a bundle knows cases by ID: `tongban case show NUMBER` shows it)" if file else ""
        raise CliError(f"no log entries about case {case}{hint}; `tongban log ls` shows what is there")
    first = views[0].recorded_at_us
    ctx.out.table(
        f"case {case}: {len(views)} entries",
        ["SEQ", "AT", "+S", "DIR", "PEER", "WHAT", "#", "MESSAGE ID", "RECEIPT", "TOOK"],
        [
            (
                v.seq,
                _stamp(v.recorded_at_us),
                f"{(v.recorded_at_us - first) / 1e6:.3f}",
                v.direction,
                v.peer,
                v.kind,
                v.case_seq or "",
                v.message_id,
                f"#{v.receipt_seq} {v.outcome}" if v.receipt_seq else "",
                f"{(v.received_at_us - v.created_at_us) / 1000:.0f} ms"
                if v.receipt_seq and v.created_at_us and v.direction == "out"
                else "",
            )
            for v in views
        ],
    )


@log.command()
@common
@click.argument("bundle", required=False)
@filters
@click.option("--to", "to", required=True, help="The peer to send to, e.g. cn-341522.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
def replay(ctx: Context, bundle: str | None, to: str, dry_run: bool, **options: Any) -> None:
    """Re-send messages with their original IDs and signatures (from a BUNDLE, or --since T)."""
    from node.api.client import ApiClient
    from tongban_api.v1 import log_pb2

    if not _running(ctx):
        raise CliError(
            f"replay sends through the running node: start it (`tongban serve --home {ctx.home.root}`)"
        )
    data = b""
    if bundle:
        _bundle(bundle)  # a clear error for a file that is not a bundle
        data = Path(bundle).read_bytes()
    request = log_pb2.ReplayRequest(
        bundle=data, filter=_filter_message(_filter(**options)), to=to, dry_run=dry_run
    )
    counts: dict[str, int] = {}
    rows = []
    with ApiClient(ctx.home, timeout=600) as client:
        for item in _stream(
            client,
            client.log.Replay,
            request,
            timeout=3600,
        ):
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
            row = {
                "seq": item.seq,
                "message_id": item.message_id,
                "kind": item.kind,
                "case_id": item.case_id,
                "outcome": item.outcome,
                "reason": item.reason,
            }
            if ctx.out.as_json:
                ctx.out.document(row)
            else:
                rows.append(row)
    if ctx.out.as_json:
        return
    if rows:
        ctx.out.table(
            None,
            ["SEQ", "MESSAGE ID", "KIND", "CASE", "OUTCOME", "REASON"],
            [(r["seq"], r["message_id"], r["kind"], r["case_id"], r["outcome"], r["reason"]) for r in rows],
        )
    ctx.out.say(", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to replay")


@log.command()
@common
@click.option("--into", "into", required=True, type=click.Path(file_okay=False), help="A new, empty folder.")
def rebuild(ctx: Context, into: str) -> None:
    """Rebuild this node's state from its log into a fresh home; print the difference (must be empty).

    The log is verified first; then replayed into NEWHOME's new database through the same
    handlers; then every domain table is compared with the live one (operational columns left
    out, see the README). Exit 0 when there is no difference, 1 otherwise.
    """
    target = Path(into).resolve()
    if _running(ctx):
        result = _rebuild_online(ctx, target)
    else:
        import asyncio

        from node.rebuild import RebuildError, rebuild_home

        with _progress(ctx, "rebuilding") as advance:
            try:
                done = asyncio.run(rebuild_home(ctx.home, target, advance))
            except RebuildError as error:
                raise CliError(str(error)) from None
        result = {
            "entries": done.entries,
            "signatures": done.signatures,
            "tables": done.tables,
            "differences": [d.as_json() for d in done.differences],
            "seconds": round(done.elapsed_seconds, 3),
        }
    differences: list[dict[str, str]] = result["differences"]
    if ctx.out.as_json:
        ctx.out.document({**result, "into": str(target)})
    else:
        ctx.out.say(
            f"verified {result['signatures']} signatures and replayed {result['entries']} log entries into "
            f"{target}; compared {len(result['tables'])} tables in {result['seconds']} s"
        )
        if differences:
            ctx.out.table(
                None,
                ["TABLE", "KEY", "COLUMN", "LIVE", "REBUILT"],
                [(d["table"], d["key"], d["column"], d["live"], d["rebuilt"]) for d in differences],
            )
        else:
            ctx.out.say("no difference: the state is derivable from the log")
    if differences:
        raise CliError(f"the rebuilt state differs from the live state in {len(differences)} places")


def _rebuild_online(ctx: Context, target: Path) -> dict[str, Any]:
    from node.api.client import ApiClient
    from tongban_api.v1 import log_pb2

    last: Any = None
    with ApiClient(ctx.home, timeout=3600) as client, _progress(ctx, "rebuilding") as advance:
        seen = 0
        for step in _stream(
            client, client.log.Rebuild, log_pb2.RebuildRequest(into=str(target)), timeout=3600
        ):
            advance(step.done - seen, step.total or None)
            seen = step.done
            last = step
    if last is None or not last.HasField("result"):
        raise CliError("the node ended the rebuild without a result; see its log")
    reply = last.result
    return {
        "entries": reply.entries,
        "signatures": reply.signatures,
        "tables": list(reply.tables),
        "differences": [
            {"table": d.table, "key": d.key, "column": d.column, "live": d.live, "rebuilt": d.rebuilt}
            for d in reply.differences
        ],
        "seconds": round(reply.elapsed_seconds, 3),
    }
