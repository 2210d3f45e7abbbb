"""CatalogFederation on the federation port: peers fetch this node's catalog, and it theirs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from federation.errors import FederationError, Unavailable
from node.peerlink import PeerChannels
from tongban_api.v1 import catalog_pb2, catalog_pb2_grpc

if TYPE_CHECKING:
    from federation import Federation
    from node.catalog.service import Catalogs

SERVICE = "tongban.v1.CatalogFederation"


class CatalogFederationServicer(catalog_pb2_grpc.CatalogFederationServicer):
    def __init__(self, federation: Federation, catalogs: Catalogs) -> None:
        self._federation = federation
        self._catalogs = catalogs

    async def FetchCatalog(
        self, request: catalog_pb2.FetchCatalogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.FetchCatalogReply:
        await self._federation.authenticate(context)
        try:
            unchanged, data = await self._catalogs.serve(request.known_version, request.known_digest)
        except FederationError as error:
            await context.abort(error.code, error.message)
            raise AssertionError("unreachable") from None
        return catalog_pb2.FetchCatalogReply(unchanged=unchanged, catalog=data)


class CatalogFetcher:
    """Calls a peer's FetchCatalog over this node's own channel to it."""

    def __init__(self, channels: PeerChannels, *, timeout: float = 15.0) -> None:
        self._channels = channels
        self._timeout = timeout

    async def __call__(self, peer_id: str, known_version: int, known_digest: bytes) -> tuple[bool, bytes]:
        stub = catalog_pb2_grpc.CatalogFederationStub(self._channels.channel(peer_id))
        try:
            reply = await stub.FetchCatalog(
                catalog_pb2.FetchCatalogRequest(known_version=known_version, known_digest=known_digest),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"{peer_id} answered {error.code().name}: {error.details()}") from None
        return reply.unchanged, reply.catalog
