"""CatalogAdmin: import this node's catalog, show it or a peer's, refresh peers' now."""

from __future__ import annotations

from typing import Any

import grpc

from node.api import convert
from node.api.errors import refusals
from node.catalog import wire
from node.catalog.service import Catalogs
from tongban_api.v1 import catalog_pb2, catalog_pb2_grpc


class CatalogAdminServicer(catalog_pb2_grpc.CatalogAdminServicer):
    def __init__(self, catalogs: Catalogs) -> None:
        self._catalogs = catalogs

    async def Import(
        self, request: catalog_pb2.ImportCatalogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.ImportCatalogReply:
        async with refusals(context):
            result = await self._catalogs.import_toml(request.toml, request.source or "catalog")
        return catalog_pb2.ImportCatalogReply(
            version=result.version, changed=result.changed, items=result.items, digest=result.digest
        )

    async def Show(
        self, request: catalog_pb2.ShowCatalogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.CatalogView:
        async with refusals(context):
            node_id = request.peer or self._catalogs.node_id
            found = await self._catalogs.view(node_id, refresh=request.refresh)
        return catalog_pb2.CatalogView(
            catalog=wire.to_proto(found.catalog),
            digest=found.digest,
            fetched_at=convert.ts(found.stored_at_us),
            source=found.source,
        )

    async def Refresh(
        self, request: catalog_pb2.RefreshCatalogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.RefreshCatalogReply:
        async with refusals(context):
            if request.peer:
                self._catalogs.federation.peers.require(request.peer)
                results = [await self._catalogs.refresh(request.peer)]
            else:
                results = await self._catalogs.refresh_all()
        return catalog_pb2.RefreshCatalogReply(
            results=[
                catalog_pb2.RefreshResult(peer=r.peer, version=r.version, changed=r.changed, error=r.error)
                for r in results
            ]
        )
