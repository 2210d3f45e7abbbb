"""Outbox: what waits, what was parked, and resending with the same message ID."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from federation.outbox import Outbox
from node.api import convert
from node.api.errors import refusals
from tongban_api.v1 import node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node


class OutboxServicer(node_pb2_grpc.OutboxServicer):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def ListMessages(
        self, request: node_pb2.ListOutboxRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.ListOutboxReply:
        limit = min(request.limit or 100, 10_000)
        rows, total = await self._node.db.read(
            lambda s: Outbox.list(
                s,
                parked_only=request.parked_only,
                peer=request.peer,
                limit=limit,
                include_delivered=request.include_delivered,
            )
        )
        return node_pb2.ListOutboxReply(messages=[convert.outbox_message(row) for row in rows], total=total)

    async def Resend(
        self, request: node_pb2.ResendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.OutboxMessage:
        outbox = self._node.federation.outbox
        async with refusals(context):
            row = await self._node.db.write(lambda tx: outbox.resend(tx, request.message_id))
        return convert.outbox_message(row)
