"""Conversion between the federation's typed units and their protobuf bytes.

This is the one module of `federation` (beside the gRPC servicer and client) that imports the
generated `tongban_api` package. Decoding never trusts its input: anything malformed becomes a
WireError with a message that says what was wrong, which the receiver turns into
INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from federation.keys import Endorsement, KeyHistory, PublicKey
from federation.units import (
    Ack,
    BatchProof,
    Checkpoint,
    Envelope,
    JoinToken,
    LocalEvent,
    LogRecord,
    NodeInfo,
    Outcome,
    Payload,
    Receipt,
)
from tongban_api.v1 import envelope_pb2, federation_pb2, log_pb2

if TYPE_CHECKING:  # these modules use this one; at run time they are imported where needed
    from federation.bundle import Bundle
    from federation.peers import Invite, Peer

TOKEN_PREFIX = "tbj1."  # noqa: S105 - a format marker, not a secret

_DIRECTIONS = {
    "in": envelope_pb2.DIRECTION_IN,
    "out": envelope_pb2.DIRECTION_OUT,
    "local": envelope_pb2.DIRECTION_LOCAL,
}
_ENTRY_TYPES = {
    "envelope": envelope_pb2.ENTRY_TYPE_ENVELOPE,
    "receipt": envelope_pb2.ENTRY_TYPE_RECEIPT,
    "local": envelope_pb2.ENTRY_TYPE_LOCAL_EVENT,
}
M = TypeVar("M", bound=Message)

_OUTCOMES = {Outcome.APPLIED: envelope_pb2.OUTCOME_APPLIED, Outcome.REJECTED: envelope_pb2.OUTCOME_REJECTED}


class WireError(ValueError):
    """Bytes that are not what they claim to be."""


def _parse(message: M, data: bytes, what: str) -> M:
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise WireError(f"{what} does not decode: {error}") from None
    return message


def _ts(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def _fields(**values: object) -> Any:
    """A sub-message as the dict of its fields, which generated constructors take directly: half
    the cost of building the sub-message and having the constructor copy it in. (Typed `Any`
    because the stubs only know the message form.)"""
    return values


def _ts_fields(us: int) -> Any:
    return _fields(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def _us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


# -- payloads ---------------------------------------------------------------------------------


def pack(message: Message) -> Payload:
    """A protobuf message as an envelope payload."""
    packed = any_pb2.Any()
    packed.Pack(message)
    return Payload(packed.type_url, packed.value)


def unpack(payload: Payload, message: M) -> M:
    """Decode a payload into `message` (an empty instance of the expected type)."""
    expected = message.DESCRIPTOR.full_name
    if payload.type_name != expected:
        raise WireError(f"payload is a {payload.type_name or 'nothing'}, expected {expected}")
    return _parse(message, payload.value, f"payload {expected}")


def ping_payload(note: str = "", padding: bytes = b"") -> Payload:
    return pack(envelope_pb2.Ping(note=note, padding=padding))


# -- envelopes --------------------------------------------------------------------------------


def envelope_bytes(envelope: Envelope) -> bytes:
    message = envelope_pb2.Envelope(
        version=envelope.version,
        message_id=envelope.message_id,
        sender=envelope.sender,
        recipient=envelope.recipient,
        kind=envelope.kind,
        case_id=envelope.case_id,
        case_seq=envelope.case_seq,
        created_at=_ts_fields(envelope.created_at_us),
        payload=_fields(type_url=envelope.payload.type_url, value=envelope.payload.value),
    )
    for key, value in envelope.headers:
        message.headers[key] = value
    return message.SerializeToString(deterministic=True)


def decode_envelope(data: bytes) -> Envelope:
    message = _parse(envelope_pb2.Envelope(), data, "envelope")
    return Envelope(
        message_id=message.message_id,
        sender=message.sender,
        recipient=message.recipient,
        kind=message.kind,
        created_at_us=_us(message.created_at),
        payload=Payload(message.payload.type_url, message.payload.value),
        case_id=message.case_id,
        case_seq=message.case_seq,
        headers=tuple(sorted(dict(message.headers).items())) if message.headers else (),
        version=message.version,
    )


def signed_envelope_bytes(
    envelope: bytes, signature: bytes, key_id: str, batch: BatchProof | None = None
) -> bytes:
    if batch is None:
        return envelope_pb2.SignedEnvelope(
            envelope=envelope, signature=signature, key_id=key_id
        ).SerializeToString()
    return envelope_pb2.SignedEnvelope(
        envelope=envelope,
        signature=signature,
        key_id=key_id,
        batch=_fields(index=batch.index, size=batch.size, path=batch.path),
    ).SerializeToString()


def decode_signed_envelope(data: bytes) -> tuple[bytes, bytes, str, BatchProof | None]:
    """(envelope bytes, signature, key_id, batch proof or None) of a serialized SignedEnvelope."""
    message = _parse(envelope_pb2.SignedEnvelope(), data, "signed envelope")
    if not message.envelope or not message.signature:
        raise WireError("signed envelope carries no envelope or no signature")
    if not message.HasField("batch"):
        return message.envelope, message.signature, message.key_id, None
    batch = message.batch
    if batch.size < 2:
        raise WireError(f"signed envelope claims a batch of {batch.size}; a batch has at least 2 envelopes")
    return (
        message.envelope,
        message.signature,
        message.key_id,
        BatchProof(batch.index, batch.size, tuple(batch.path)),
    )


# -- receipts ---------------------------------------------------------------------------------


def receipt_bytes(receipt: Receipt) -> bytes:
    message = envelope_pb2.Receipt(
        version=receipt.version,
        receiver=receipt.receiver,
        sender=receipt.sender,
        received_at=_ts_fields(receipt.received_at_us),
        acks=[
            _fields(
                message_id=ack.message_id,
                envelope_sha256=ack.envelope_sha256,
                outcome=_OUTCOMES[ack.outcome],
                code=ack.code,
                reason=ack.reason,
            )
            for ack in receipt.acks
        ],
    )
    return message.SerializeToString(deterministic=True)


def decode_receipt(data: bytes) -> Receipt:
    message = _parse(envelope_pb2.Receipt(), data, "receipt")
    acks = []
    for ack in message.acks:
        if ack.outcome == envelope_pb2.OUTCOME_APPLIED:
            outcome = Outcome.APPLIED
        elif ack.outcome == envelope_pb2.OUTCOME_REJECTED:
            outcome = Outcome.REJECTED
        else:
            raise WireError(f"receipt for {ack.message_id} has no outcome")
        acks.append(Ack(ack.message_id, ack.envelope_sha256, outcome, ack.code, ack.reason))
    return Receipt(
        receiver=message.receiver,
        sender=message.sender,
        received_at_us=_us(message.received_at),
        acks=tuple(acks),
        version=message.version,
    )


def signed_receipt_bytes(receipt: bytes, signature: bytes, key_id: str) -> bytes:
    return envelope_pb2.SignedReceipt(receipt=receipt, signature=signature, key_id=key_id).SerializeToString()


def decode_signed_receipt(data: bytes) -> tuple[bytes, bytes, str]:
    message = _parse(envelope_pb2.SignedReceipt(), data, "signed receipt")
    if not message.receipt or not message.signature:
        raise WireError("signed receipt carries no receipt or no signature")
    return message.receipt, message.signature, message.key_id


# -- the message log --------------------------------------------------------------------------


def local_event_bytes(event: LocalEvent) -> bytes:
    return envelope_pb2.LocalEvent(
        kind=event.kind,
        case_id=event.case_id,
        payload=any_pb2.Any(type_url=event.payload.type_url, value=event.payload.value),
    ).SerializeToString(deterministic=True)


def decode_local_event(data: bytes) -> LocalEvent:
    message = _parse(envelope_pb2.LocalEvent(), data, "local event")
    return LocalEvent(message.kind, Payload(message.payload.type_url, message.payload.value), message.case_id)


def log_record_bytes(record: LogRecord) -> bytes:
    return envelope_pb2.LogRecord(
        seq=record.seq,
        recorded_at=_ts_fields(record.recorded_at_us),
        direction=_DIRECTIONS[record.direction],
        type=_ENTRY_TYPES[record.entry_type],
        peer=record.peer,
        body=record.body,
    ).SerializeToString(deterministic=True)


def decode_log_record(data: bytes) -> LogRecord:
    message = _parse(envelope_pb2.LogRecord(), data, "log record")
    directions = {v: k for k, v in _DIRECTIONS.items()}
    types = {v: k for k, v in _ENTRY_TYPES.items()}
    return LogRecord(
        seq=message.seq,
        recorded_at_us=_us(message.recorded_at),
        direction=directions.get(message.direction, "unknown"),
        entry_type=types.get(message.type, "unknown"),
        peer=message.peer,
        body=message.body,
    )


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    return envelope_pb2.Checkpoint(
        node_id=checkpoint.node_id, seq=checkpoint.seq, hash=checkpoint.hash, at=_ts(checkpoint.at_us)
    ).SerializeToString(deterministic=True)


def decode_checkpoint(data: bytes) -> Checkpoint:
    message = _parse(envelope_pb2.Checkpoint(), data, "checkpoint")
    return Checkpoint(message.node_id, message.seq, message.hash, _us(message.at))


def signed_checkpoint_bytes(checkpoint: bytes, signature: bytes, key_id: str) -> bytes:
    return envelope_pb2.SignedCheckpoint(
        checkpoint=checkpoint, signature=signature, key_id=key_id
    ).SerializeToString()


def decode_signed_checkpoint(data: bytes) -> tuple[bytes, bytes, str]:
    message = _parse(envelope_pb2.SignedCheckpoint(), data, "signed checkpoint")
    return message.checkpoint, message.signature, message.key_id


# -- keys and identities ----------------------------------------------------------------------


def endorsement_bytes(endorsement: Endorsement) -> bytes:
    return envelope_pb2.KeyEndorsement(
        node_id=endorsement.node_id,
        key_id=endorsement.key_id,
        public_key=endorsement.public_key,
        valid_from=_ts(endorsement.valid_from_us),
        previous_key_id=endorsement.previous_key_id,
    ).SerializeToString(deterministic=True)


def decode_endorsement(data: bytes) -> Endorsement:
    message = _parse(envelope_pb2.KeyEndorsement(), data, "key endorsement")
    return Endorsement(
        message.node_id, message.key_id, message.public_key, _us(message.valid_from), message.previous_key_id
    )


def public_key(
    key_id: str, public: bytes, valid_from_us: int, endorsement: bytes, signature: bytes
) -> PublicKey:
    """A PublicKey with its endorsement decoded (when it has one)."""
    return PublicKey(
        key_id=key_id,
        public_key=public,
        valid_from_us=valid_from_us,
        endorsement=decode_endorsement(endorsement) if endorsement else None,
        endorsement_bytes=endorsement,
        endorsement_signature=signature,
    )


def key_set_to_proto(history: KeyHistory) -> envelope_pb2.KeySet:
    return envelope_pb2.KeySet(
        node_id=history.node_id,
        keys=[
            envelope_pb2.SigningKey(
                key_id=key.key_id,
                public_key=key.public_key,
                valid_from=_ts(key.valid_from_us),
                endorsement=key.endorsement_bytes,
                endorsement_signature=key.endorsement_signature,
            )
            for key in history.keys
        ],
    )


def key_set_from_proto(message: envelope_pb2.KeySet) -> KeyHistory:
    keys = tuple(
        public_key(k.key_id, k.public_key, _us(k.valid_from), k.endorsement, k.endorsement_signature)
        for k in message.keys
    )
    return KeyHistory(message.node_id, keys)


def node_info_to_proto(info: NodeInfo) -> federation_pb2.NodeInfo:
    return federation_pb2.NodeInfo(
        node_id=info.node_id,
        name=info.name,
        endpoint=info.endpoint,
        tls_certificate=info.tls_certificate,
        keys=key_set_to_proto(info.keys),
    )


def node_info_from_proto(message: federation_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        node_id=message.node_id,
        name=message.name,
        endpoint=message.endpoint,
        tls_certificate=message.tls_certificate,
        keys=key_set_from_proto(message.keys),
    )


# -- join tokens ------------------------------------------------------------------------------


def encode_token(token: JoinToken) -> str:
    message = federation_pb2.JoinToken(
        node_id=token.node_id,
        endpoint=token.endpoint,
        signing_key=token.signing_key,
        tls_fingerprint=bytes.fromhex(token.tls_fingerprint),
        secret=token.secret,
        expires_at=token.expires_at_us // 1_000_000,
    )
    raw = message.SerializeToString(deterministic=True)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(text: str) -> JoinToken:
    text = "".join(text.split())
    if not text.startswith(TOKEN_PREFIX):
        raise WireError(f"not a tongban join token: it should start with {TOKEN_PREFIX!r}")
    body = text[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise WireError("join token is damaged: it is not base64url; copy it again in full") from None
    message = _parse(federation_pb2.JoinToken(), raw, "join token")
    if len(message.secret) != 32 or len(message.signing_key) != 32 or len(message.tls_fingerprint) != 32:
        raise WireError("join token is damaged or truncated: copy it again in full")
    return JoinToken(
        node_id=message.node_id,
        endpoint=message.endpoint,
        signing_key=message.signing_key,
        tls_fingerprint=message.tls_fingerprint.hex(),
        secret=message.secret,
        expires_at_us=message.expires_at * 1_000_000,
    )


# -- peers and invitations as local events ----------------------------------------------------


def peer_payload(peer: Peer) -> Payload:
    """A peer as the payload of the local event "peer.save" (see federation.peers)."""
    record = log_pb2.PeerRecord(
        node_id=peer.node_id,
        name=peer.name,
        endpoint=peer.endpoint,
        tls_certificate=peer.tls_certificate,
        keys=key_set_to_proto(peer.keys),
        state=peer.state,
        added_at_us=peer.added_at_us,
        joined_via=peer.joined_via,
        allow=sorted(peer.allow),
        deny=sorted(peer.deny),
    )
    if peer.removed_at_us is not None:
        record.removed_at_us = peer.removed_at_us
    return pack(record)


def decode_peer(payload: Payload) -> Peer:
    from federation.peers import Peer

    record = unpack(payload, log_pb2.PeerRecord())
    return Peer(
        node_id=record.node_id,
        name=record.name,
        endpoint=record.endpoint,
        tls_certificate=record.tls_certificate,
        keys=key_set_from_proto(record.keys),
        state=record.state,
        added_at_us=record.added_at_us,
        removed_at_us=record.removed_at_us if record.HasField("removed_at_us") else None,
        joined_via=record.joined_via,
        allow=frozenset(record.allow),
        deny=frozenset(record.deny),
    )


def invite_payload(invite: Invite) -> Payload:
    record = log_pb2.InviteRecord(
        invite_id=invite.invite_id,
        join_certificate=invite.join_certificate,
        join_fingerprint=invite.join_fingerprint,
        created_at_us=invite.created_at_us,
        expires_at_us=invite.expires_at_us,
        used_by=invite.used_by,
    )
    if invite.used_at_us is not None:
        record.used_at_us = invite.used_at_us
    return pack(record)


def decode_invite(payload: Payload) -> Invite:
    from federation.peers import Invite

    record = unpack(payload, log_pb2.InviteRecord())
    return Invite(
        record.invite_id,
        record.join_certificate,
        record.join_fingerprint,
        record.created_at_us,
        record.expires_at_us,
        record.used_at_us if record.HasField("used_at_us") else None,
        record.used_by,
    )


# -- log bundles ------------------------------------------------------------------------------

BUNDLE_MAGIC = b"TBLOG1\n"
BUNDLE_VERSION = 1


def bundle_bytes(bundle: Bundle) -> bytes:
    message = log_pb2.LogBundle(
        version=BUNDLE_VERSION,
        node_id=bundle.node_id,
        exported_at=_ts(bundle.exported_at_us),
        keys=key_set_to_proto(bundle.keys),
        peer_keys=[key_set_to_proto(history) for history in bundle.peer_keys],
        previous_hash=bundle.previous_hash,
        entries=[
            log_pb2.BundleEntry(seq=e.seq, record=e.record, hash=e.hash, selected=e.selected)
            for e in bundle.entries
        ],
        checkpoints=list(bundle.checkpoints),
        selection=bundle.selection,
    )
    return BUNDLE_MAGIC + message.SerializeToString(deterministic=True)


def decode_bundle(data: bytes) -> Bundle:
    from federation.bundle import Bundle, BundleEntry

    if not data.startswith(BUNDLE_MAGIC):
        raise WireError(
            "not a tongban log bundle: it should start with TBLOG1 (made by `tongban log export`)"
        )
    message = _parse(log_pb2.LogBundle(), data[len(BUNDLE_MAGIC) :], "log bundle")
    if message.version != BUNDLE_VERSION:
        raise WireError(f"log bundle version {message.version} is not known here (this tongban reads 1)")
    return Bundle(
        node_id=message.node_id,
        exported_at_us=_us(message.exported_at),
        keys=key_set_from_proto(message.keys),
        peer_keys=tuple(key_set_from_proto(k) for k in message.peer_keys),
        previous_hash=message.previous_hash,
        entries=tuple(BundleEntry(e.seq, e.record, e.hash, e.selected) for e in message.entries),
        checkpoints=tuple(message.checkpoints),
        selection=message.selection,
    )
