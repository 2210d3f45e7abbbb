"""Alembic environment: runs migrations on the connection that node.storage hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

# Importing the models registers their tables on SQLModel.metadata.
import federation.models  # noqa: F401
import node.cases.models
import node.catalog.store
import node.certs.models  # noqa: F401
import video.models  # noqa: F401

target_metadata = SQLModel.metadata


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
