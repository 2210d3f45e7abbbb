"""tongban's federation layer: everything that crosses between nodes.

Identity and keys (`identity`, `keys`, `tls`), peering by join token (`peering`, `peers`),
signed envelopes and receipts (`units`, `wire`, `envelope`), the transactional outbox and its
per-peer senders (`outbox`, `sender`, `client`), the receiving side (`server`, `inbox`), the
hash-chained message log (`log`) and the transaction runner they share (`store`). `service`
assembles them into one `Federation` per node.

The federation moves signed envelopes and knows nothing of cases, certificates or calls: the
domain registers a handler per message kind and sends with `Federation.enqueue` inside its own
transactions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from federation.address import InvalidNodeId, NodeId, validate_node_id
    from federation.errors import (
        FailedPrecondition,
        FederationError,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        Rejected,
        Unauthenticated,
        Unavailable,
    )
    from federation.handlers import Delivered, Handlers
    from federation.identity import NodeIdentity
    from federation.outbox import Outgoing
    from federation.peers import Peer
    from federation.sender import SenderSettings
    from federation.service import Federation, FederationSettings, PeerState
    from federation.store import Database, Tx
    from federation.units import Envelope, LocalEvent, Payload, SealedEnvelope
    from federation.wire import pack, unpack

_EXPORTS = {
    "Database": "federation.store",
    "Delivered": "federation.handlers",
    "Envelope": "federation.units",
    "FailedPrecondition": "federation.errors",
    "Federation": "federation.service",
    "FederationError": "federation.errors",
    "FederationSettings": "federation.service",
    "Handlers": "federation.handlers",
    "InvalidArgument": "federation.errors",
    "InvalidNodeId": "federation.address",
    "LocalEvent": "federation.units",
    "NodeId": "federation.address",
    "NodeIdentity": "federation.identity",
    "NotFound": "federation.errors",
    "Outgoing": "federation.outbox",
    "Payload": "federation.units",
    "Peer": "federation.peers",
    "PeerState": "federation.service",
    "PermissionDenied": "federation.errors",
    "Rejected": "federation.errors",
    "SealedEnvelope": "federation.units",
    "SenderSettings": "federation.sender",
    "Tx": "federation.store",
    "Unauthenticated": "federation.errors",
    "Unavailable": "federation.errors",
    "pack": "federation.wire",
    "unpack": "federation.wire",
    "validate_node_id": "federation.address",
}

__all__ = [
    "Database",
    "Delivered",
    "Envelope",
    "FailedPrecondition",
    "Federation",
    "FederationError",
    "FederationSettings",
    "Handlers",
    "InvalidArgument",
    "InvalidNodeId",
    "LocalEvent",
    "NodeId",
    "NodeIdentity",
    "NotFound",
    "Outgoing",
    "Payload",
    "Peer",
    "PeerState",
    "PermissionDenied",
    "Rejected",
    "SealedEnvelope",
    "SenderSettings",
    "Tx",
    "Unauthenticated",
    "Unavailable",
    "pack",
    "unpack",
    "validate_node_id",
]


def __getattr__(name: str) -> Any:
    """Import the public names lazily, so that light users (the CLI) do not pay for the rest."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'federation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
