"""Catalogs of one node: importing its own, serving it to peers, fetching and caching theirs.

`Catalogs` is what the rest of the node uses (the local API, the cases domain, certificates):

    catalogs.own()                 this node's catalog, or None before the first import
    catalogs.of(node_id)           this node's, or a peer's cached catalog (fetched when missing)
    catalogs.refresh(peer_id)      fetch now; nothing is written when the peer's is unchanged

Fetching asks the peer with the version and digest already held; an unchanged catalog comes
back as a bare "unchanged", so the scheduled refresh costs a small call per peer and no writes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel import Session

from federation import Federation
from federation.clock import now_us
from federation.errors import FailedPrecondition, InvalidArgument, NotFound
from federation.store import Database, Tx
from federation.wire import WireError
from node.catalog import store, wire
from node.catalog.model import Catalog, CatalogError, parse_catalog

_log = logging.getLogger("tongban.catalog")

# (peer_id, known_version, known_digest) -> (unchanged, catalog bytes)
Fetcher = Callable[[str, int, bytes], Awaitable[tuple[bool, bytes]]]


@dataclass(frozen=True)
class CatalogRecord:
    catalog: Catalog
    digest: str  # hex
    stored_at_us: int
    source: str  # own | peer


@dataclass(frozen=True)
class Imported:
    version: int
    changed: bool
    items: int
    digest: str


@dataclass(frozen=True)
class Refreshed:
    peer: str
    version: int
    changed: bool
    error: str = ""


class Catalogs:
    def __init__(self, federation: Federation, db: Database, fetcher: Fetcher) -> None:
        self.federation = federation
        self.node_id = federation.node_id
        self.db = db
        self._fetch = fetcher
        federation.handlers.register_local("catalog.publish", store.apply_publish)
        federation.handlers.register_local("catalog.cache", store.apply_cache)

    # -- this node's own ----------------------------------------------------------------------

    async def import_toml(self, text: str, source: str = "catalog") -> Imported:
        try:
            parsed = parse_catalog(text, node_id=self.node_id, source=source)
        except CatalogError as error:
            raise InvalidArgument(str(error)) from None
        published = now_us()  # chosen before the event; it travels inside it

        def publish(tx: Tx) -> Imported:
            current = store.row(tx.session, self.node_id)
            if current is not None:
                held = wire.decode(current.body)
                if held.same_content(parsed):
                    return Imported(held.version, False, len(held.items), current.digest.hex())
            version = (current.version if current is not None else 0) + 1
            data = wire.encode(
                Catalog(self.node_id, version=version, published_at_us=published, items=parsed.items)
            )
            self.federation.act(tx, "catalog.publish", wire.event_payload(data))
            return Imported(version, True, len(parsed.items), wire.digest(data).hex())

        return await self.db.write(publish)

    async def own(self) -> Catalog | None:
        return await self.db.read(lambda s: store.load_catalog(s, self.node_id))

    async def record(self, node_id: str) -> CatalogRecord | None:
        def read(session: Session) -> CatalogRecord | None:
            found = store.row(session, node_id)
            if found is None:
                return None
            return CatalogRecord(
                wire.decode(found.body), found.digest.hex(), found.stored_at_us, found.source
            )

        return await self.db.read(read)

    async def of(self, node_id: str, *, refresh: bool = False) -> Catalog:
        """The catalog of this node or of a peer; a peer's is fetched when none is cached."""
        found = await self.view(node_id, refresh=refresh)
        return found.catalog

    async def view(self, node_id: str, *, refresh: bool = False) -> CatalogRecord:
        if node_id == self.node_id:
            found = await self.record(node_id)
            if found is None:
                raise FailedPrecondition(
                    f"{node_id} has no catalog yet; its operator loads one with `tongban catalog import FILE`"
                )
            return found
        self.federation.peers.require(node_id)
        found = await self.record(node_id)
        if found is None or refresh:
            result = await self.refresh(node_id)
            if result.error and found is None:
                raise FailedPrecondition(
                    f"the catalog of {node_id} is not cached here and fetching it failed: {result.error}; "
                    "try again when it is reachable"
                )
            found = await self.record(node_id)
        if found is None:
            raise NotFound(f"{node_id} publishes no catalog yet; ask its operator to import one")
        return found

    # -- peers' -------------------------------------------------------------------------------

    async def serve(self, known_version: int, known_digest: bytes) -> tuple[bool, bytes]:
        """What FetchCatalog answers: (unchanged, bytes)."""
        found = await self.db.read(lambda s: store.row(s, self.node_id))
        if found is None:
            raise NotFound(f"{self.node_id} has no catalog yet; its operator has not imported one")
        if found.version == known_version and found.digest == known_digest:
            return True, b""
        return False, found.body

    async def refresh(self, peer_id: str) -> Refreshed:
        held = await self.db.read(lambda s: store.row(s, peer_id))
        version, digest = (held.version, held.digest) if held is not None else (0, b"")
        try:
            unchanged, data = await self._fetch(peer_id, version, digest)
        except Exception as error:  # the peer is away, or refuses: keep what is cached
            _log.info("fetching the catalog of %s failed: %s", peer_id, error)
            return Refreshed(peer_id, version, False, str(error))
        if unchanged:
            return Refreshed(peer_id, version, False)
        try:
            fetched = wire.decode(data)
        except WireError as error:
            return Refreshed(peer_id, version, False, f"the catalog of {peer_id} is damaged: {error}")
        if fetched.node_id != peer_id:
            return Refreshed(peer_id, version, False, f"{peer_id} sent the catalog of {fetched.node_id}")
        await self.db.write(lambda tx: self.federation.act(tx, "catalog.cache", wire.event_payload(data)))
        _log.info(
            "cached the catalog of %s, version %d (%d items)", peer_id, fetched.version, len(fetched.items)
        )
        return Refreshed(peer_id, fetched.version, True)

    async def refresh_all(self) -> list[Refreshed]:
        return [await self.refresh(peer.node_id) for peer in self.federation.peers.active()]
