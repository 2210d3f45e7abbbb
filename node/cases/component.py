"""Cases as a node component: the case book, materials, timers, and their gRPC services.

Configuration (optional, in node.toml):

    [cases]
    fetch_bytes_per_second = 0   # cap on material fetches from peers; 0: no cap
"""

from __future__ import annotations

import logging
import tomllib
from typing import TYPE_CHECKING, Any

import grpc

from node.cases import timers
from node.cases.blobs import BlobStore
from node.cases.book import CaseBook
from node.cases.materials import SERVICE, CasesFederationServicer, MaterialFetcher, MaterialMetrics
from node.peerlink import PeerChannels
from tongban_api.v1 import cases_pb2_grpc

if TYPE_CHECKING:
    from node.catalog.component import CatalogComponent
    from node.runtime import Node

_log = logging.getLogger("tongban.cases")

# How often materials that have not arrived are looked for again (besides at every change).
RESCAN_SECONDS = 30.0


class CasesComponent:
    name = "cases"

    def __init__(self, node: Node) -> None:
        self.node = node
        catalog = _catalog_component(node)
        # Files as durable as the database's commits (see BlobStore).
        relaxed = node.db.is_sqlite and node.config.storage.sqlite_synchronous.upper() == "NORMAL"
        self.blobs = BlobStore(node.home.blobs, durable=not relaxed)
        self.channels = PeerChannels(node.federation)
        self.metrics = MaterialMetrics(node.registry)
        self.book = CaseBook(node.federation, node.db, self.blobs, catalog.catalogs.of)
        self.catalogs = catalog.catalogs
        self.fetcher = MaterialFetcher(
            node.db,
            self.blobs,
            self.channels,
            self.metrics,
            bytes_per_second=float(_settings(node).get("fetch_bytes_per_second", 0)),
        )
        self.book.on_materials = self.fetcher.wake
        self.book.on_due = self._schedule

    def attach(self, node: Node, api: grpc.aio.Server, federation_port: grpc.aio.Server) -> list[str]:
        from node.api.cases import CasesServicer, ClerksServicer

        cases_pb2_grpc.add_ClerksServicer_to_server(ClerksServicer(self.book), api)
        cases_pb2_grpc.add_CasesServicer_to_server(CasesServicer(self), api)
        CasesFederationServicer(node.federation, node.db, self.blobs, self.metrics).add_to_server(
            federation_port
        )
        return ["tongban.v1.Clerks", "tongban.v1.Cases", SERVICE]

    async def start(self) -> None:
        await self.book.load()
        timers.register(self.book)
        self.node.scheduler.add_job(
            self.fetcher.scan,
            "interval",
            seconds=RESCAN_SECONDS,
            id="materials-rescan",
            jobstore="default",
            replace_existing=True,
        )
        await self.fetcher.scan()

    async def stop(self) -> None:
        timers.unregister(self.book)
        await self.fetcher.stop()
        await self.channels.close()

    def _schedule(self, case_id: str, number: str, due: str) -> None:
        if not due:
            return
        timers.schedule(self.node.scheduler, self.node.node_id, case_id, due)
        _log.info("case %s is due %s", number, due)


def _catalog_component(node: Node) -> CatalogComponent:
    from node.catalog.component import CatalogComponent

    for component in node.components:
        if isinstance(component, CatalogComponent):
            return component
    raise RuntimeError("the cases component needs the catalog component to start before it")


def _settings(node: Node) -> dict[str, Any]:
    try:
        raw = tomllib.loads(node.home.config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    section = raw.get("cases", {})
    return section if isinstance(section, dict) else {}
