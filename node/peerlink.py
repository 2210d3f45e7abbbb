"""Channels from this node to its peers' federation ports, for services beyond message delivery.

The federation's own sender keeps one channel per peer for envelopes. Domain services on the
federation port (catalog fetch, material streams) get channels of their own here, with the same
mutual TLS and pinned certificate, so that a 50 MiB material stream never queues behind, or in
front of, the signed messages. A channel is made again when a peer's endpoint or certificate
changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from federation import tls
from federation.client import channel_options

if TYPE_CHECKING:
    from federation import Federation


class PeerChannels:
    def __init__(self, federation: Federation, *, max_message_bytes: int = 16 * 1024 * 1024) -> None:
        self._federation = federation
        self._max = max_message_bytes
        self._open: dict[str, tuple[str, bytes, grpc.aio.Channel]] = {}

    def channel(self, peer_id: str) -> grpc.aio.Channel:
        """The channel to an active peer (NotFound / FailedPrecondition when it is not one)."""
        peer = self._federation.peers.require(peer_id)
        known = self._open.get(peer_id)
        if known is not None and known[0] == peer.endpoint and known[1] == peer.tls_certificate:
            return known[2]
        own = self._federation.identity.tls
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.der_to_pem(peer.tls_certificate),
            private_key=own.key_pem,
            certificate_chain=own.cert_pem,
        )
        channel = grpc.aio.secure_channel(
            peer.endpoint, credentials, options=channel_options(peer_id, self._max)
        )
        self._open[peer_id] = (peer.endpoint, peer.tls_certificate, channel)
        return channel

    async def close(self) -> None:
        for _, _, channel in self._open.values():
            await channel.close(None)
        self._open.clear()
