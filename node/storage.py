"""Storage of a node: the database URL, the engines, and schema migrations (Alembic).

SQLite in WAL mode in the home is the default; a PostgreSQL URL (`--db postgresql://...`) puts
the node's data in PostgreSQL instead. Every schema change is an Alembic migration under
node/migrations/versions; `tongban init` and `tongban serve` bring the schema up to date.
Migrations are kept in one branch per domain (federation, cases, ...), all applied together
("heads"), so that domains can add tables without stepping on each other's revision chain.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from federation.store import Database, create_engines

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """SQLAlchemy URL for what an operator typed (postgresql:// uses psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    config.set_main_option("path_separator", "os")
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest revision of every branch."""
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def expected_heads(engine: Engine) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def open_database(url: str, *, synchronous: str = "NORMAL", upgrade: bool = True) -> Database:
    """Engines for `url`, the schema brought up to date, and the transaction runner."""
    write_engine, read_engine = create_engines(normalize_url(url), synchronous=synchronous)
    if upgrade:
        migrate(write_engine)
    return Database(write_engine, read_engine)
