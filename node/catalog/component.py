"""The catalog as a node component: its services on both ports and the scheduled refresh."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from node.catalog.exchange import SERVICE, CatalogFederationServicer, CatalogFetcher
from node.catalog.service import Catalogs
from node.peerlink import PeerChannels
from tongban_api.v1 import catalog_pb2_grpc

if TYPE_CHECKING:
    from federation import Peer
    from node.runtime import Node

_log = logging.getLogger("tongban.catalog")

# How often peers' catalogs are fetched again (an unchanged one costs one small call).
REFRESH_SECONDS = 300.0


class CatalogComponent:
    name = "catalog"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.channels = PeerChannels(node.federation)
        self.catalogs = Catalogs(node.federation, node.db, CatalogFetcher(self.channels))
        self._known: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self, node: Node, api: grpc.aio.Server, federation_port: grpc.aio.Server) -> list[str]:
        from node.api.catalog import CatalogAdminServicer

        catalog_pb2_grpc.add_CatalogAdminServicer_to_server(CatalogAdminServicer(self.catalogs), api)
        catalog_pb2_grpc.add_CatalogFederationServicer_to_server(
            CatalogFederationServicer(node.federation, self.catalogs), federation_port
        )
        return ["tongban.v1.CatalogAdmin", SERVICE]

    async def start(self) -> None:
        self._known = {peer.node_id for peer in self.node.federation.peers.active()}
        self.node.federation.peers.on_change(self._peer_changed)
        # In the memory job store: the schedule is made anew at every start, beginning at once.
        self.node.scheduler.add_job(
            self.refresh,
            "interval",
            seconds=REFRESH_SECONDS,
            id="catalog-refresh",
            jobstore="default",
            replace_existing=True,
            next_run_time=_soon(),
        )

    def _peer_changed(self, peer: Peer | None) -> None:
        """Fetch a new peer's catalog at once instead of at the next scheduled refresh."""
        if peer is None or not peer.active or peer.node_id in self._known:
            return
        self._known.add(peer.node_id)
        task = asyncio.get_running_loop().create_task(self.catalogs.refresh(peer.node_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh(self) -> None:
        for result in await self.catalogs.refresh_all():
            if result.changed:
                _log.info("catalog of %s is now version %d", result.peer, result.version)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.channels.close()


def _soon() -> object:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=2)
