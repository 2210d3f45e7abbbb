"""Rebuilding a node's state from its message log (`tongban log rebuild --into NEWHOME`).

The proof that the log is complete: a fresh home gets the node's configuration and keys and an
empty database; the domain components are assembled on it as on a running node (their handlers
registered, nothing started: no ports, no scheduler, no fetching); the recorded log, verified
first as `tongban log verify` does, is replayed into it entry by entry (`federation.rebuild`);
then every domain table of the rebuilt database is compared with the live one, row by row and
column by column. The difference must be empty.

Left out of the comparison, because they record how delivery went rather than what happened
(they are not in the log and need not be): `log_checkpoints` (signed by a scheduled job),
`cert_status_lists` (a cache of other issuers' lists, refetched), `apscheduler_jobs` (timers,
scheduled anew), `alembic_version`; and the columns `peers.last_contact_us`,
`outbox.attempts`, `outbox.next_attempt_us`, `outbox.last_error`, outbox rows parked versus
pending (both "not delivered"), `outbox.id` (a surrogate key: rows are matched by message ID) and
`case_materials.present` and `.fetch_from` (whether the material's file has been fetched yet and
from where it still must be; blob files are not compared at all).

On a running node the live state is read in one snapshot together with the log's head, and only
the entries up to that head are replayed, so that messages arriving meanwhile do not show up as
differences.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import tomli_w
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, MetaData, Table, create_engine, func, select
from sqlalchemy.engine import Connection

from federation import Federation, audit
from federation.errors import FederationError
from federation.identity import HISTORY_FILE, NodeIdentity, _history_from_json
from federation.keys import KeyHistory
from federation.models import LOG
from federation.rebuild import SourceLog, replay_log
from node import components
from node.config import NodeConfig
from node.home import Home
from node.privacy import mask_field
from node.storage import normalize_url, open_database

if TYPE_CHECKING:
    from node.runtime import Node

# Tables not compared, and why: see the module docstring (and the README).
SKIPPED_TABLES = frozenset({"alembic_version", "log_checkpoints", "cert_status_lists", "apscheduler_jobs"})
SKIPPED_COLUMNS = {
    "peers": frozenset({"last_contact_us"}),
    "outbox": frozenset({"id", "attempts", "next_attempt_us", "last_error"}),
    "case_materials": frozenset({"present", "fetch_from"}),
}
# Rows matched by these columns instead of their primary key.
KEYS = {"outbox": ("message_id",)}


class RebuildError(FederationError):
    """Rebuilding cannot go on; the message says why."""


@dataclass(frozen=True)
class Difference:
    """One cell (or one whole row) where the rebuilt state differs from the live one."""

    table: str
    key: str
    column: str
    live: str
    rebuilt: str

    def as_json(self) -> dict[str, str]:
        return {
            "table": self.table,
            "key": self.key,
            "column": self.column,
            "live": self.live,
            "rebuilt": self.rebuilt,
        }


@dataclass
class Rebuilt:
    entries: int = 0
    signatures: int = 0
    tables: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    elapsed_seconds: float = 0.0


Progress = Callable[[int, int | None], None]


def _no_progress(n: int, total: int | None) -> None:
    return None


# -- entry points -------------------------------------------------------------------------------


async def rebuild_home(home: Home, into: Path, progress: Progress = _no_progress) -> Rebuilt:
    """Rebuild a stopped node's home into `into` (its database opened read-only)."""
    if not home.exists():
        raise RebuildError(f"{home.root} is not a node home (no node.toml); give --home")
    config = NodeConfig.load(home.config_path)
    history_path = home.keys / HISTORY_FILE
    if not history_path.exists():
        raise RebuildError(f"{history_path} is missing: the node's key history is needed to check the log")
    keys = _history_from_json(history_path.read_bytes())
    if config.storage.url:
        engine = create_engine(normalize_url(config.storage.url))
    else:
        if not home.db_path.exists():
            raise RebuildError(f"{home.db_path} does not exist: is {home.root} a node home?")
        engine = create_engine(
            f"sqlite:///file:{home.db_path}?mode=ro&uri=true", connect_args={"check_same_thread": False}
        )
    try:
        return await _rebuild(home, config, keys, engine, into, progress)
    finally:
        engine.dispose()


async def rebuild_running(node: Node, into: str, progress: Progress = _no_progress) -> Rebuilt:
    """Rebuild a running node's state into `into`, next to it (reading its database)."""
    return await _rebuild(
        node.home, node.config, node.federation.identity.keys, node.db.read_engine, Path(into), progress
    )


# -- the steps ----------------------------------------------------------------------------------


async def _rebuild(
    home: Home, config: NodeConfig, keys: KeyHistory, live: Engine, into: Path, progress: Progress
) -> Rebuilt:
    started = time.monotonic()
    into = _check_target(home, into)
    with _snapshot_connection(live) as connection, connection.begin():
        # One snapshot: the head, the tables and the entries replayed all agree.
        head = int(connection.execute(select(func.coalesce(func.max(LOG.c.seq), 0))).scalar_one())
        progress(0, 2 * head)
        signatures = await asyncio.to_thread(_verify, connection, keys, lambda n: progress(n, None))
        live_rows = await asyncio.to_thread(_snapshot, connection)
        target = _new_home(home, config, into)

        def read(after: int, limit: int) -> list[tuple[int, bytes]]:
            rows = connection.execute(
                select(LOG.c.seq, LOG.c.record)
                .where(LOG.c.seq > after, LOG.c.seq <= head)
                .order_by(LOG.c.seq)
                .limit(limit)
            ).all()
            return [(int(seq), record) for seq, record in rows]

        # The source is read on the new database's writer thread while this one waits.
        entries = await _replay(target, config, keys.node_id, SourceLog(keys.node_id, read), progress)
    rebuilt_engine = create_engine(target.default_db_url())
    try:
        with rebuilt_engine.connect() as connection:
            rebuilt_rows = _snapshot(connection)
    finally:
        rebuilt_engine.dispose()
    tables = sorted(set(live_rows) | set(rebuilt_rows))
    return Rebuilt(
        entries=entries,
        signatures=signatures,
        tables=tables,
        differences=compare(live_rows, rebuilt_rows),
        elapsed_seconds=time.monotonic() - started,
    )


def _check_target(home: Home, into: Path) -> Path:
    """Where to rebuild, checked before anything is read or written."""
    into = into.expanduser().resolve()
    if into == home.root.resolve():
        raise RebuildError(f"{into} is the node's own home; rebuild into a new, empty folder")
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise RebuildError(f"{into} exists and is not empty; name a new folder (it is created)")
    return into


def _snapshot_connection(live: Engine) -> Connection:
    """A connection whose transaction reads one snapshot (SQLite's read transactions always do;
    PostgreSQL's do at REPEATABLE READ, not at its default READ COMMITTED)."""
    connection = live.connect()
    if live.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def _new_home(home: Home, config: NodeConfig, into: Path) -> Home:
    """A fresh home with the node's configuration and keys (its identity is not in the log).

    The rebuilt state always goes into the new home's own SQLite database: a node that keeps its
    database at `storage.url` gets a copy of its configuration without it, so that nothing is
    written where the live state is.
    """
    target = Home(into)
    target.prepare()
    if config.storage.url:
        raw = tomllib.loads(home.config_path.read_text(encoding="utf-8"))
        raw.get("storage", {}).pop("url", None)  # every other section as it is
        target.config_path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    else:
        shutil.copy2(home.config_path, target.config_path)
    shutil.copytree(home.keys, target.keys, dirs_exist_ok=True)
    target.create_token()
    return target


def _verify(connection: Connection, keys: KeyHistory, progress: Callable[[int], None]) -> int:
    """Check the recorded log as `tongban log verify` does; refuse to rebuild from a bad one."""
    import concurrent.futures

    from sqlmodel import Session

    with Session(bind=connection) as session, concurrent.futures.ThreadPoolExecutor(2) as pool:
        report = audit.verify(audit.database_chain(session, keys), executor=pool, progress=progress)
    if not report.ok:
        raise RebuildError(
            f"the log does not verify, so it cannot be rebuilt from: {report.problem} "
            f"(`tongban log verify` shows the same; entry {report.problem_seq})"
        )
    return report.signatures


async def _replay(
    target: Home, config: NodeConfig, node_id: str, source: SourceLog, progress: Progress
) -> int:
    db = await asyncio.to_thread(
        open_database, target.default_db_url(), synchronous=config.storage.sqlite_synchronous
    )
    try:
        identity = NodeIdentity.load(target.keys, node_id, config.node.name)
        federation = Federation(
            identity, db, endpoint=config.federation.advertise or config.federation.listen
        )
        await federation.load()
        shell = _Assembly(target, config, db, federation)
        await shell.attach()
        try:
            return await replay_log(federation, source, lambda n: progress(n, None))
        finally:
            await shell.close()
    finally:
        await asyncio.to_thread(db.close)


class _Assembly:
    """What the domain components need of a `Node`, for a node that is built but never served."""

    def __init__(self, home: Home, config: NodeConfig, db: Any, federation: Federation) -> None:
        self.home = home
        self.config = config
        self.db = db
        self.federation = federation
        self.registry = CollectorRegistry()
        self.components: list[Any] = []
        # Never started: timers a replayed case sets are simply dropped with it.
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore(), "persistent": MemoryJobStore()}
        )
        self._servers: list[grpc.aio.Server] = []

    @property
    def node_id(self) -> str:
        return self.config.node.id

    async def attach(self) -> None:
        api, port = grpc.aio.server(), grpc.aio.server()
        self._servers = [api, port]
        node = cast("Node", self)
        for factory in components.factories():
            component = factory(node)
            component.attach(node, api, port)
            self.components.append(component)
        from node.cases.component import CasesComponent

        for component in self.components:
            if isinstance(component, CasesComponent):
                # No fetching of materials, no due-date jobs: this node never runs.
                component.book.on_materials = lambda: None
                component.book.on_due = lambda case_id, number, due: None

    async def close(self) -> None:
        for server in self._servers:
            await server.stop(None)
        await self.federation.stop()


# -- the comparison -----------------------------------------------------------------------------

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


def _snapshot(connection: Connection) -> Rows:
    """Every compared table: {table: {key: {column: value}}}, operational columns left out."""
    metadata = MetaData()
    metadata.reflect(bind=connection)
    found: Rows = {}
    for name, table in sorted(metadata.tables.items()):
        if name in SKIPPED_TABLES:
            continue
        found[name] = _rows(connection, name, table)
    return found


def _rows(connection: Connection, name: str, table: Table) -> dict[tuple[Any, ...], dict[str, Any]]:
    key = KEYS.get(name) or tuple(c.name for c in table.primary_key.columns)
    skipped = SKIPPED_COLUMNS.get(name, frozenset())
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in connection.execute(select(table)).mappings():
        values = {column: value for column, value in row.items() if column not in skipped}
        if name == "outbox" and values.get("state") == "parked":
            values["state"] = "pending"  # parked or pending: not delivered either way
        rows[tuple(row[k] for k in key)] = values
    return rows


def compare(live: Rows, rebuilt: Rows) -> list[Difference]:
    """Each differing cell, each row only on one side, in table and key order."""
    differences: list[Difference] = []
    for table in sorted(set(live) | set(rebuilt)):
        ours, theirs = live.get(table, {}), rebuilt.get(table, {})
        for key in sorted(set(ours) | set(theirs), key=repr):
            shown = "/".join(str(part) for part in key)
            if key not in theirs:
                differences.append(Difference(table, shown, "*", "present", "missing"))
            elif key not in ours:
                differences.append(Difference(table, shown, "*", "missing", "present"))
            else:
                for column in sorted(set(ours[key]) | set(theirs[key])):
                    a, b = ours[key].get(column), theirs[key].get(column)
                    if a != b:
                        differences.append(
                            Difference(table, shown, column, _show(column, a), _show(column, b))
                        )
    return differences


def _show(column: str, value: Any) -> str:
    """A cell as the difference table shows it: personal data masked, long values cut."""
    if isinstance(value, bytes):
        text = value.hex()
        return text if len(text) <= 24 else f"{text[:16]}… ({len(value)} bytes)"
    shown = str(mask_field(column, value))
    return shown if len(shown) <= 60 else shown[:57] + "…"
