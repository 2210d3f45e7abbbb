"""Peering: join tokens, the peer list, removal and access rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from federation.clock import now_us
from federation.errors import NotFound
from node.api import convert
from node.api.errors import refusals
from tongban_api.v1 import node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node


class PeeringServicer(node_pb2_grpc.PeeringServicer):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def CreateInvite(
        self, request: node_pb2.CreateInviteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.Invite:
        async with refusals(context):
            invite, token = await self._node.federation.peering.invite(request.ttl_seconds or 3600.0)
        return convert.invite(invite, now_us(), token)

    async def GetInvite(
        self, request: node_pb2.GetInviteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.Invite:
        async with refusals(context):
            invite = self._node.federation.peers.invite(request.invite_id)
            if invite is None:
                raise NotFound(f"no invitation {request.invite_id} here (or it is long expired)")
        return convert.invite(invite, now_us())

    async def Join(
        self, request: node_pb2.JoinPeerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.PeerDetail:
        async with refusals(context):
            peer = await self._node.federation.join(request.token)
        return convert.peer_detail(peer)

    async def ListPeers(
        self, request: node_pb2.ListPeersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.ListPeersReply:
        states = await self._node.federation.peer_states()
        return node_pb2.ListPeersReply(
            peers=[
                convert.peer_detail(state.peer, state)
                for state in states
                if state.peer.active or request.include_removed
            ]
        )

    async def GetPeer(
        self, request: node_pb2.GetPeerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.PeerDetail:
        async with refusals(context):
            peer = self._node.federation.peers.get(request.node_id)
            if peer is None:
                self._node.federation.peers.require(request.node_id)
        assert peer is not None
        states = {s.peer.node_id: s for s in await self._node.federation.peer_states()}
        return convert.peer_detail(peer, states.get(peer.node_id))

    async def RemovePeer(
        self, request: node_pb2.RemovePeerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.PeerDetail:
        async with refusals(context):
            peer = await self._node.federation.remove_peer(request.node_id)
        return convert.peer_detail(peer)

    async def SetAccess(
        self, request: node_pb2.SetAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.PeerDetail:
        async with refusals(context):
            peer = await self._node.federation.set_access(request.node_id, list(request.items), request.allow)
        return convert.peer_detail(peer)
