"""Calls to a peer's federation port, over mutual TLS with the peer's certificate pinned.

The peer's own self-signed certificate is the only root the channel trusts, and the TLS name
checked is `<node id>.tongban`, so a connection reaches that peer or fails. Deliver and
DeliverBatch move raw bytes: what the receiver stores is exactly what was signed.
"""

from __future__ import annotations

from typing import Any

import grpc

from federation import tls, wire
from federation.envelope import open_receipt
from federation.errors import status_code_number
from federation.units import DeliveryResult, NodeInfo, SignedReceipt
from federation.wire import WireError
from tongban_api.v1 import federation_pb2, federation_pb2_grpc

# Failures of the connection rather than of the message: retried without counting against it.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
_SERVICE = "/tongban.v1.Federation/"


class RpcFailure(Exception):
    """A call that failed as a whole, with its status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT


def channel_options(peer_id: str, max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.ssl_target_name_override", tls.server_name(peer_id)),
        ("grpc.default_authority", tls.server_name(peer_id)),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # Reconnect quickly once a peer is back; the sender has its own, longer backoff.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


def _failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    details = error.details() or ""
    if error.code() == grpc.StatusCode.UNAVAILABLE and "Socket closed" in details:
        details += " (the peer may have refused this node's TLS certificate: is this node still its peer?)"
    return RpcFailure(error.code(), details)


class PeerClient:
    """The federation calls this node makes to one peer."""

    def __init__(
        self,
        own: tls.TlsIdentity,
        peer_id: str,
        endpoint: str,
        certificate_der: bytes,
        *,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.peer_id = peer_id
        self.endpoint = endpoint
        self.certificate_der = certificate_der
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.der_to_pem(certificate_der),
            private_key=own.key_pem,
            certificate_chain=own.cert_pem,
        )
        self._channel = grpc.aio.secure_channel(
            endpoint, credentials, options=channel_options(peer_id, max_message_bytes)
        )
        self._deliver = self._channel.unary_unary(
            _SERVICE + "Deliver", request_serializer=None, response_deserializer=None
        )
        self._deliver_batch = self._channel.unary_unary(
            _SERVICE + "DeliverBatch",
            request_serializer=federation_pb2.EnvelopeBatch.SerializeToString,
            response_deserializer=federation_pb2.BatchResult.FromString,
        )
        self._stub = federation_pb2_grpc.FederationStub(self._channel)
        self._receipts: dict[bytes, SignedReceipt | None] = {}

    async def deliver(
        self, wires: list[bytes], *, unary: bool, timeout: float, message_ids: list[str] | None = None
    ) -> list[DeliveryResult]:
        """Send serialized SignedEnvelopes; one result per envelope, in order.

        Raises RpcFailure when the call as a whole fails.
        """
        if unary and len(wires) == 1:
            try:
                answer: bytes = await self._deliver(wires[0], timeout=timeout)
            except grpc.aio.AioRpcError as error:
                raise _failure(error) from None
            message_id = message_ids[0] if message_ids else _message_id(wires[0])
            return [self._result_from_receipt(message_id, answer)]
        try:
            batch: federation_pb2.BatchResult = await self._deliver_batch(
                federation_pb2.EnvelopeBatch(signed_envelopes=wires), timeout=timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        receipts = [self._receipt(data) for data in batch.signed_receipts]
        results = []
        for item in batch.results:
            if item.ok:
                receipt = receipts[item.receipt_index] if item.receipt_index < len(receipts) else None
                if receipt is None:
                    results.append(
                        DeliveryResult(
                            item.message_id, error_code=13, error_message="the peer sent a damaged receipt"
                        )
                    )
                else:
                    results.append(DeliveryResult(item.message_id, receipt=receipt, duplicate=item.duplicate))
            else:
                results.append(
                    DeliveryResult(
                        item.message_id, error_code=item.error_code, error_message=item.error_message
                    )
                )
        if len(results) != len(wires):
            raise RpcFailure(
                grpc.StatusCode.INTERNAL, f"the peer answered {len(results)} of {len(wires)} envelopes"
            )
        return results

    def _receipt(self, data: bytes) -> SignedReceipt | None:
        """Decode a receipt; a receiver often answers many calls with the same one, so keep a few."""
        cached = self._receipts.get(data)
        if cached is None and data not in self._receipts:
            try:
                cached = open_receipt(data)
            except WireError:
                cached = None
            self._receipts[data] = cached
            if len(self._receipts) > 256:
                del self._receipts[next(iter(self._receipts))]
        return cached

    def _result_from_receipt(self, message_id: str, answer: bytes) -> DeliveryResult:
        receipt = self._receipt(answer)
        if receipt is None:
            return DeliveryResult(
                message_id,
                error_code=status_code_number(grpc.StatusCode.INTERNAL),
                error_message="the peer sent a damaged receipt",
            )
        return DeliveryResult(message_id, receipt=receipt)

    async def hello(self, info: NodeInfo, timeout: float) -> NodeInfo:
        try:
            reply = await self._stub.Hello(
                federation_pb2.HelloRequest(caller=wire.node_info_to_proto(info)), timeout=timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
        return wire.node_info_from_proto(reply.callee)

    async def close(self) -> None:
        await self._channel.close(None)


def _message_id(sent: bytes) -> str:
    try:
        envelope_bytes = wire.decode_signed_envelope(sent)[0]
        return wire.decode_envelope(envelope_bytes).message_id
    except WireError:
        return ""


async def call_join(
    endpoint: str,
    inviter_id: str,
    inviter_certificate_der: bytes,
    join_identity: tls.TlsIdentity,
    joiner: NodeInfo,
    proof: bytes,
    timeout: float = 15.0,
) -> NodeInfo:
    """Present this node to the inviter over the join certificate; returns the inviter's identity."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.der_to_pem(inviter_certificate_der),
        private_key=join_identity.key_pem,
        certificate_chain=join_identity.cert_pem,
    )
    async with grpc.aio.secure_channel(
        endpoint, credentials, options=channel_options(inviter_id, 4 << 20)
    ) as channel:
        stub = federation_pb2_grpc.FederationStub(channel)
        try:
            reply = await stub.Join(
                federation_pb2.JoinRequest(joiner=wire.node_info_to_proto(joiner), proof=proof),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from None
    return wire.node_info_from_proto(reply.inviter)
