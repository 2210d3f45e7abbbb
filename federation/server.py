"""The federation port: mutual TLS with pinned peer certificates, and the Federation service.

The TLS layer asks every client for a certificate and accepts only those in the trust store
(`PeerDirectory.trust_roots`: pinned peer certificates and recent join certificates); the store
is re-read at each new handshake, so a peer removed is refused at once. Each call then maps the
client certificate to a peer by fingerprint, which also refuses calls on connections that were
opened before a peer was removed.

Deliver and DeliverBatch are registered with raw-bytes handlers, so the bytes stored are the
bytes that came, and garbage gets INVALID_ARGUMENT with a message instead of a parse failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc

from federation import tls, wire
from federation.errors import FederationError, status_code_from_number
from federation.peers import Invite, Peer, PeerDirectory
from federation.units import DeliveryResult, NodeInfo
from federation.wire import WireError
from tongban_api.v1 import federation_pb2

if TYPE_CHECKING:
    from federation.inbox import Inbox

_log = logging.getLogger("tongban.federation.server")
SERVICE_NAME = "tongban.v1.Federation"


class TrustStore:
    """Feeds gRPC the current trust roots at each handshake (dynamic server credentials)."""

    def __init__(self, own: tls.TlsIdentity, peers: PeerDirectory) -> None:
        self._own = own
        self._peers = peers
        self._version = -1

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        roots = self._peers.trust_roots() or self._own.cert_pem  # gRPC needs at least one root
        return grpc.ssl_server_certificate_configuration([(self._own.key_pem, self._own.cert_pem)], roots)

    def credentials(self) -> grpc.ServerCredentials:
        self._version = self._peers.trust_version
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)  # None means "unchanged"
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), fetch, require_client_authentication=True
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        version = self._peers.trust_version
        if version == self._version:
            return None
        self._version = version
        return self._configuration()


class FederationServicer:
    """Join, Hello, Deliver and DeliverBatch, as the federation's peers call them."""

    def __init__(
        self,
        *,
        peers: PeerDirectory,
        inbox: Inbox,
        on_contact: Callable[[Peer], None],
        join: Callable[[Invite, NodeInfo, bytes], Awaitable[NodeInfo]],
        hello: Callable[[Peer, NodeInfo], Awaitable[NodeInfo]],
        max_batch: int = 1024,
    ) -> None:
        self._peers = peers
        self._inbox = inbox
        self._on_contact = on_contact
        self._join = join
        self._hello = hello
        self._max_batch = max_batch
        self._fingerprints: dict[bytes, str] = {}

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Join": grpc.unary_unary_rpc_method_handler(
                    self.Join,
                    request_deserializer=federation_pb2.JoinRequest.FromString,
                    response_serializer=federation_pb2.JoinResponse.SerializeToString,
                ),
                "Hello": grpc.unary_unary_rpc_method_handler(
                    self.Hello,
                    request_deserializer=federation_pb2.HelloRequest.FromString,
                    response_serializer=federation_pb2.HelloResponse.SerializeToString,
                ),
                # Raw bytes in and out: a SignedEnvelope in, a SignedReceipt out.
                "Deliver": grpc.unary_unary_rpc_method_handler(self.Deliver),
                "DeliverBatch": grpc.unary_unary_rpc_method_handler(self.DeliverBatch),
            },
        )

    # -- who is calling -----------------------------------------------------------------------

    def _fingerprint(self, context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
        pem = list(context.auth_context().get("x509_pem_cert") or ())
        if not pem:
            return None
        cached = self._fingerprints.get(pem[0])
        if cached is None:
            cached = tls.fingerprint(tls.pem_to_der(pem[0]))
            if len(self._fingerprints) > 4096:
                self._fingerprints.clear()
            self._fingerprints[pem[0]] = cached
        return cached

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Peer:
        """The active peer behind this call, or abort with UNAUTHENTICATED."""
        fingerprint = self._fingerprint(context)
        if fingerprint is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no client certificate: only peers may call the federation port (`tongban peer join`)",
            )
        peer = self._peers.by_fingerprint(fingerprint or "")
        if peer is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the TLS certificate {tls.pretty_fingerprint((fingerprint or '')[:16])}… is not pinned by "
                f"{self._peers.node_id}: the peering was removed or never made; ask its operator for a join token",
            )
        assert peer is not None
        self._on_contact(peer)
        return peer

    # -- the calls ----------------------------------------------------------------------------

    async def Join(
        self, request: federation_pb2.JoinRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> federation_pb2.JoinResponse:
        fingerprint = self._fingerprint(context)
        invite = self._peers.invite_by_fingerprint(fingerprint or "")
        if invite is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "this connection was not made with a join token of this node; ask its operator for a new token",
            )
        assert invite is not None
        try:
            joiner = wire.node_info_from_proto(request.joiner)
            inviter = await self._join(invite, joiner, request.proof)
        except (FederationError, WireError) as error:
            await _abort(context, error)
            raise AssertionError("unreachable") from None
        return federation_pb2.JoinResponse(inviter=wire.node_info_to_proto(inviter))

    async def Hello(
        self, request: federation_pb2.HelloRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> federation_pb2.HelloResponse:
        peer = await self.authenticate(context)
        try:
            callee = await self._hello(peer, wire.node_info_from_proto(request.caller))
        except (FederationError, WireError) as error:
            await _abort(context, error)
            raise AssertionError("unreachable") from None
        return federation_pb2.HelloResponse(callee=wire.node_info_to_proto(callee))

    async def Deliver(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        peer = await self.authenticate(context)
        [result] = await self._receive(peer, [request], context)
        if result.receipt is None:
            await context.abort(status_code_from_number(result.error_code), result.error_message)
        assert result.receipt is not None
        return result.receipt.wire

    async def DeliverBatch(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        peer = await self.authenticate(context)
        batch = federation_pb2.EnvelopeBatch()
        try:
            batch.ParseFromString(request)
        except Exception as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not an envelope batch: {error}")
        if len(batch.signed_envelopes) > self._max_batch:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(batch.signed_envelopes)} envelopes in one batch; this node takes at most {self._max_batch}",
            )
        results = await self._receive(peer, list(batch.signed_envelopes), context)
        return _batch_result(results).SerializeToString()

    async def _receive(
        self, peer: Peer, wires: list[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> list[DeliveryResult]:
        try:
            return await self._inbox.receive(peer, wires)
        except Exception as error:
            _log.exception("recording envelopes from %s failed", peer.node_id)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"{self._peers.node_id} could not record the envelopes ({type(error).__name__}); send them again later",
            )
            raise AssertionError("unreachable") from None


def server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options for a server that peers and the CLI call: message size, and keepalive pings.

    Peers' channels ping every 30 s even when idle (`client.channel_options`); a server accepts
    pings that far apart (the recv-side minimum is `grpc.http2.min_ping_interval_without_data_ms`)
    instead of counting them as strikes and closing the connection with "too_many_pings".
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def _batch_result(results: list[DeliveryResult]) -> federation_pb2.BatchResult:
    answer = federation_pb2.BatchResult()
    index: dict[bytes, int] = {}
    for result in results:
        if result.receipt is not None:
            position = index.get(result.receipt.wire)
            if position is None:
                position = index[result.receipt.wire] = len(answer.signed_receipts)
                answer.signed_receipts.append(result.receipt.wire)
            answer.results.append(
                federation_pb2.DeliveryResult(
                    message_id=result.message_id, ok=True, receipt_index=position, duplicate=result.duplicate
                )
            )
        else:
            answer.results.append(
                federation_pb2.DeliveryResult(
                    message_id=result.message_id,
                    ok=False,
                    error_code=result.error_code,
                    error_message=result.error_message,
                )
            )
    return answer


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
    if isinstance(error, FederationError):
        await context.abort(error.code, error.message)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
