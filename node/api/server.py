"""The services of the local API port, attached to the node's API server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from node.api.admin import NodeAdminServicer
from node.api.log import MessageLogServicer
from node.api.outbox import OutboxServicer
from node.api.peering import PeeringServicer
from tongban_api.v1 import log_pb2_grpc, node_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node


def attach_api(node: Node, server: grpc.aio.Server) -> list[str]:
    """Add the node's own services; returns their full names (for health and reflection)."""
    node_pb2_grpc.add_NodeAdminServicer_to_server(NodeAdminServicer(node), server)
    node_pb2_grpc.add_PeeringServicer_to_server(PeeringServicer(node), server)
    node_pb2_grpc.add_OutboxServicer_to_server(OutboxServicer(node), server)
    log_pb2_grpc.add_MessageLogServicer_to_server(MessageLogServicer(node), server)
    return ["tongban.v1.NodeAdmin", "tongban.v1.Peering", "tongban.v1.Outbox", "tongban.v1.MessageLog"]
