"""The public surface of the federation package is deliberate; this pins it."""

import federation


def test_federation_exports() -> None:
    assert federation.__all__ == [
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
    for name in federation.__all__:
        assert getattr(federation, name) is not None
