"""Transactions against a node's database: one writer thread with group commit, a reader pool.

SQLite admits one writer at a time, and a commit costs far more than the statements before it.
So every write goes to a single writer thread, which takes all jobs that are waiting, runs each
inside its own SAVEPOINT of one transaction, and commits once ("group commit"). A job that raises
rolls back only its savepoint, and its caller gets the exception; the others commit. Callers
await the commit: when `write` returns, the change is durable, and only then do the job's
`after_commit` callbacks run (on the caller's event loop). That ordering is what lets the outbox,
the inbox and the message log say "acknowledged means never lost".

The writer keeps one connection for good. A job sees the transaction two ways: `tx.session`, an
ORM session made on first use (inside a savepoint of its own, joined to the transaction), which
is what domain code uses; and `tx.sql`, statements handed to the database driver as they are
(`Sql`), which is what the outbox, the inbox and the message log use for the few rows they
write per message: SQLAlchemy's work per session and per statement costs several times what
SQLite needs to store those rows.

Reads run in a small thread pool, each in its own transaction (a consistent snapshot), so the
event loop never waits on the database. The same runner serves PostgreSQL.

SQLite connections run in WAL mode with synchronous=NORMAL by default: a committed transaction
survives the process being killed (kill -9), though not necessarily the machine losing power;
`synchronous="FULL"` buys that too at the price of an fsync per commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

from federation.clock import now_us

T = TypeVar("T")
_log = logging.getLogger(__name__)
# The writer pings a PostgreSQL connection that has been idle this long before using it.
_PING_AFTER_IDLE = 30.0


class Sql:
    """Statements given to the database driver as they are, in the writer's transaction.

    Written with `?` placeholders (SQLite's style) and turned into the driver's own style once
    (psycopg's `%s`); parameters are plain tuples. Only for the hot statements of the outbox, the
    inbox and the log: everything else goes through SQLAlchemy.
    """

    def __init__(self, driver_connection: Any, qmark: bool) -> None:
        self._raw = driver_connection
        self._qmark = qmark
        self._styled: dict[str, str] = {}

    def _style(self, statement: str) -> str:
        if self._qmark:
            return statement
        styled = self._styled.get(statement)
        if styled is None:
            styled = self._styled[statement] = statement.replace("?", "%s")
        return styled

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a statement that returns rows (SELECT, or ... RETURNING) and fetch them all."""
        cursor = self._raw.execute(self._style(statement), params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns how many rows it changed."""
        cursor = self._raw.execute(self._style(statement), params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, statement: str, params: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter tuple (one driver call for all)."""
        if not params:
            return
        cursor = self._raw.cursor()
        try:
            cursor.executemany(self._style(statement), params)
        finally:
            cursor.close()

    @staticmethod
    def placeholders(count: int) -> str:
        """`?, ?, ...` for an IN list of `count` values."""
        return ", ".join("?" * count)


class Tx:
    """One job's view of the running transaction."""

    def __init__(self, connection: Connection, sql: Sql, now: int) -> None:
        self._connection = connection
        self.sql = sql
        # One timestamp for everything the transaction records.
        self.now_us = now
        self._session: Session | None = None
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], object]] = []

    @property
    def session(self) -> Session:
        """An ORM session in this transaction, made on first use within a savepoint of its own."""
        if self._session is None:
            self._session = Session(
                bind=self._connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
        return self._session

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the caller's event loop once the transaction is durable."""
        self._after_commit.append(callback)

    def on_rollback(self, callback: Callable[[], object]) -> None:
        """Run `callback` (in the writer thread) if this job's changes are rolled back."""
        self._on_rollback.append(callback)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested savepoint: if the block raises, its changes and its rollback hooks unwind.

        Driver-level statements (`tx.sql`) in the block unwind with it as well.
        """
        hooks, callbacks = len(self._on_rollback), len(self._after_commit)
        session = self.session
        try:
            with session.begin_nested():
                session.connection()  # the SAVEPOINT now, not at the session's first statement
                yield
        except BaseException:
            for callback in reversed(self._on_rollback[hooks:]):
                callback()
            del self._on_rollback[hooks:]
            del self._after_commit[callbacks:]
            raise

    def _finish(self) -> None:
        """The job returned: write out and close its session (releasing the session's savepoint)."""
        if self._session is not None:
            session, self._session = self._session, None
            try:
                session.commit()
            finally:
                session.close()

    def _rolled_back(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            with suppress(Exception):
                session.rollback()
            with suppress(Exception):
                session.close()
        for callback in reversed(self._on_rollback):
            callback()
        self._on_rollback.clear()
        self._after_commit.clear()


@dataclass
class _Job:
    fn: Callable[[Tx], Any]
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None
    at_us: int | None = None


@dataclass
class _Outcome:
    job: _Job
    tx: Tx | None
    ok: bool
    value: Any = None
    error: BaseException | None = None


@dataclass
class _Stop:
    done: threading.Event = field(default_factory=threading.Event)


class _JobFailed(Exception):
    def __init__(self, error: BaseException) -> None:
        self.error = error


def create_engines(url: str, *, synchronous: str = "NORMAL", pool_size: int = 4) -> tuple[Engine, Engine]:
    """(write engine, read engine) for a database URL; one shared engine for PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":
            url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        engine = create_engine(url, pool_size=pool_size, max_overflow=4, pool_pre_ping=True)
        return engine, engine
    if synchronous.upper() not in {"NORMAL", "FULL"}:
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")

    def sqlite_engine(begin: str, size: int) -> Engine:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=size,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # Straight to the driver: through SQLAlchemy's execution it cost more than the BEGIN.
            connection.connection.driver_connection.execute(begin)

        return engine

    # The writer takes the write lock at BEGIN, so it never has to upgrade a read lock.
    return sqlite_engine("BEGIN IMMEDIATE", 1), sqlite_engine("BEGIN", pool_size)


class Database:
    """The transaction runner: `await db.write(fn)` and `await db.read(fn)`."""

    def __init__(
        self, write_engine: Engine, read_engine: Engine | None = None, *, max_group: int = 512
    ) -> None:
        self.write_engine = write_engine
        self.read_engine = read_engine or write_engine
        self.is_sqlite = write_engine.dialect.name == "sqlite"
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="db-read")
        self._connection: Connection | None = None
        self._sql: Sql | None = None
        self._last_used = time.monotonic()
        self._writer = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._writer.start()
        self._closed = False

    @classmethod
    def open(cls, url: str, *, synchronous: str = "NORMAL") -> Database:
        write_engine, read_engine = create_engines(url, synchronous=synchronous)
        return cls(write_engine, read_engine)

    # -- the public face ----------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T], *, at_us: int | None = None) -> T:
        """Run `fn` in a transaction on the writer thread; returns once it is committed.

        `at_us` sets the transaction's time (`tx.now_us`) instead of the clock's: rebuilding a
        node from its log replays each entry at the time it was recorded.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submit(_Job(fn, future, loop, at_us))
        return await future

    def write_blocking(self, fn: Callable[[Tx], T]) -> T:
        """The same from code without an event loop (offline tools); callbacks run inline."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(_Job(fn, future, None))
        return future.result()

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` with a read session in the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    def read_blocking(self, fn: Callable[[Session], T]) -> T:
        return self._read(fn)

    def close(self) -> None:
        """Finish queued writes, then release threads and connections."""
        if self._closed:
            return
        self._closed = True
        stop = _Stop()
        self._queue.put(stop)
        stop.done.wait()
        self._writer.join()
        self._readers.shutdown(wait=True)
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()

    # -- inside -------------------------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")
        self._queue.put(job)

    def _read(self, fn: Callable[[Session], T]) -> T:
        with Session(self.read_engine, expire_on_commit=False) as session, session.begin():
            return fn(session)

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if isinstance(first, _Stop):
                    first.done.set()
                    return
                group = [first]
                stop: _Stop | None = None
                while len(group) < self._max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    group.append(item)
                self._settle(self._run_group(group))
                if stop is not None:
                    stop.done.set()
                    return
        finally:
            self._disconnect()

    def _connect(self) -> tuple[Connection, Sql]:
        """The writer's own connection (made on first use, and again after one broke).

        A PostgreSQL connection that sat idle for a while is pinged first (a server may have
        closed it), so that a clerk's first action after a quiet night does not fail.
        """
        now = time.monotonic()
        idle, self._last_used = now - self._last_used, now
        if self._connection is not None and not self.is_sqlite and idle > _PING_AFTER_IDLE:
            try:
                assert self._sql is not None
                self._sql.rows("SELECT 1")
            except Exception:
                _log.info("the database connection was lost while idle; connecting again")
                self._disconnect()
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            self._disconnect()
            self._connection = self.write_engine.connect()
            self._sql = Sql(self._connection.connection.driver_connection, qmark=self.is_sqlite)
        assert self._sql is not None
        return self._connection, self._sql

    def _disconnect(self) -> None:
        connection, self._connection, self._sql = self._connection, None, None
        if connection is not None:
            with suppress(Exception):
                connection.close()

    def _run_group(self, group: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        savepoints = len(group) > 1
        try:
            connection, sql = self._connect()
            with connection.begin():
                now = now_us()
                for job in group:
                    tx = Tx(connection, sql, now if job.at_us is None else job.at_us)
                    if savepoints:
                        sql.run("SAVEPOINT tongban_job")
                    try:
                        value = job.fn(tx)
                        tx._finish()
                    except BaseException as error:  # the caller gets whatever its job raised
                        tx._rolled_back()
                        if not savepoints:
                            raise _JobFailed(error) from error
                        sql.run("ROLLBACK TO SAVEPOINT tongban_job")
                        sql.run("RELEASE SAVEPOINT tongban_job")
                        outcomes.append(_Outcome(job, tx, False, error=error))
                    else:
                        if savepoints:
                            sql.run("RELEASE SAVEPOINT tongban_job")
                        outcomes.append(_Outcome(job, tx, True, value=value))
        except _JobFailed as failed:
            return [_Outcome(group[0], None, False, error=failed.error)]
        except Exception as error:  # the commit itself failed: nothing of the group holds
            _log.exception("group commit of %d jobs failed", len(group))
            for outcome in reversed(outcomes):
                if outcome.ok and outcome.tx is not None:
                    outcome.tx._rolled_back()
            self._disconnect()  # a broken connection is made anew for the next group
            return [_Outcome(job, None, False, error=error) for job in group]
        return outcomes

    def _settle(self, outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            if outcome.job.loop is None:
                _finish([outcome])
            else:
                by_loop.setdefault(outcome.job.loop, []).append(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_finish, items)
            except RuntimeError:  # the loop is gone; nobody is waiting any more
                continue


def _finish(outcomes: list[_Outcome]) -> None:
    """Run after-commit callbacks, then wake the callers (on their own loop)."""
    for outcome in outcomes:
        if outcome.ok and outcome.tx is not None:
            for callback in outcome.tx._after_commit:
                try:
                    callback()
                except Exception:
                    _log.exception("after-commit callback failed")
    for outcome in outcomes:
        future = outcome.job.future
        if future.done():
            continue
        if outcome.ok:
            future.set_result(outcome.value)
        else:
            assert outcome.error is not None
            future.set_exception(outcome.error)
