"""Fixtures: a fresh folder per test, and database URLs for SQLite and (when there is one) PostgreSQL.

PostgreSQL tests run against TONGBAN_TEST_POSTGRES_URL (CI's `.ci/run` sets it to the
PostgreSQL on 127.0.0.1); each test gets a database of its own, dropped afterwards. Without the
variable they are skipped, and the skip says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("TONGBAN_TEST_POSTGRES_URL", "")
NO_POSTGRES = "TONGBAN_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh, empty folder for a node home."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    admin = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = f"tongban_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tongban.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
