"""Where catalogs live: one row per node, this node's own and every peer's cached one.

Both kinds change only through local events in the message log (see federation.handlers):
`catalog.publish` when the operator imports a changed catalog, `catalog.cache` when a fetch
from a peer brings a version this node did not hold. A fetch that finds nothing new records
nothing, so the scheduled refresh costs one small call per peer and no writes.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary
from sqlmodel import Field, Session, SQLModel

from federation.errors import InvalidArgument
from federation.store import Tx
from federation.units import LocalEvent
from federation.wire import WireError
from node.catalog import wire
from node.catalog.model import Catalog


class CatalogRow(SQLModel, table=True):
    __tablename__ = "catalogs"

    node_id: str = Field(primary_key=True, max_length=16)
    source: str = Field(max_length=8)  # own | peer
    version: int = Field(sa_type=BigInteger)
    digest: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # SHA-256 of body
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # serialized tongban.v1.Catalog
    published_at_us: int = Field(sa_type=BigInteger)
    stored_at_us: int = Field(sa_type=BigInteger)


def row(session: Session, node_id: str) -> CatalogRow | None:
    return session.get(CatalogRow, node_id)


def load_catalog(session: Session, node_id: str) -> Catalog | None:
    """The catalog of `node_id` as this node knows it: its own, or a peer's cached copy."""
    found = session.get(CatalogRow, node_id)
    return wire.decode(found.body) if found is not None else None


def store(tx: Tx, data: bytes, source: str) -> Catalog:
    """Insert or replace a catalog row from its exact bytes (inside a local event's handler)."""
    try:
        catalog = wire.decode(data)
    except WireError as error:
        raise InvalidArgument(str(error)) from None
    existing = tx.session.get(CatalogRow, catalog.node_id)
    target = existing or CatalogRow(
        node_id=catalog.node_id,
        source=source,
        version=catalog.version,
        digest=b"",
        body=b"",
        published_at_us=0,
        stored_at_us=0,
    )
    target.source = source
    target.version = catalog.version
    target.digest = wire.digest(data)
    target.body = data
    target.published_at_us = catalog.published_at_us
    target.stored_at_us = tx.now_us
    tx.session.add(target)
    tx.session.flush()
    return catalog


def apply_publish(tx: Tx, event: LocalEvent) -> Catalog:
    return store(tx, wire.event_catalog(event.payload), "own")


def apply_cache(tx: Tx, event: LocalEvent) -> Catalog:
    return store(tx, wire.event_catalog(event.payload), "peer")
