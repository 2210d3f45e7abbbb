"""The federation's wire units as typed Python objects.

Envelopes, receipts, node identities and join tokens as the rest of the code works with them;
`federation.wire` turns them into bytes and back, `federation.envelope` signs and checks them.
A sealed envelope or signed receipt keeps the exact bytes it was signed over, because those
bytes (never a re-serialization) are what gets stored, sent and verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from federation.keys import KeyHistory

ENVELOPE_VERSION = 1
RECEIPT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Payload:
    """A kind's own message, packed like google.protobuf.Any: a type URL and the bytes."""

    type_url: str
    value: bytes

    @property
    def type_name(self) -> str:
        return self.type_url.rpartition("/")[2]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message from one node to another, before or after signing."""

    message_id: str
    sender: str
    recipient: str
    kind: str
    created_at_us: int
    payload: Payload
    case_id: str = ""
    case_seq: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    version: int = ENVELOPE_VERSION


@dataclass(frozen=True, slots=True)
class BatchProof:
    """Where a batch-signed envelope sits in its batch's Merkle tree (see federation.merkle)."""

    index: int
    size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """An envelope with its signature and the exact bytes both cover.

    With `batch` set, the signature covers the root of a Merkle tree of envelope digests, and
    `batch` is this envelope's way up to that root.
    """

    envelope: Envelope
    envelope_bytes: bytes
    signature: bytes
    key_id: str
    # The serialized SignedEnvelope, as sent on the wire and stored in the log.
    wire: bytes
    # SHA-256 of `envelope_bytes`, what a receipt acknowledges.
    sha256: bytes
    batch: BatchProof | None = None


class Outcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver's word on one envelope."""

    message_id: str
    envelope_sha256: bytes
    outcome: Outcome
    code: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Receipt:
    receiver: str
    sender: str
    received_at_us: int
    acks: tuple[Ack, ...]
    version: int = RECEIPT_VERSION

    def ack_for(self, message_id: str) -> Ack | None:
        return self._by_message.get(message_id)

    @cached_property
    def _by_message(self) -> dict[str, Ack]:
        return {ack.message_id: ack for ack in self.acks}


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    receipt: Receipt
    receipt_bytes: bytes
    signature: bytes
    key_id: str
    wire: bytes


@dataclass(frozen=True)
class NodeInfo:
    """A node as its peers know it."""

    node_id: str
    name: str
    endpoint: str
    tls_certificate: bytes  # DER
    keys: KeyHistory


@dataclass(frozen=True)
class JoinToken:
    """What `tongban peer invite` prints and `tongban peer join` takes."""

    node_id: str
    endpoint: str
    signing_key: bytes  # the inviter's current Ed25519 public key
    tls_fingerprint: str  # hex SHA-256 of the inviter's certificate
    secret: bytes  # one-time, 32 bytes
    expires_at_us: int


@dataclass(frozen=True)
class LocalEvent:
    """Something this node did on its own (a clerk's action), as recorded in the message log."""

    kind: str
    payload: Payload
    case_id: str = ""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One entry of the message log, decoded."""

    seq: int
    recorded_at_us: int
    direction: str  # "in", "out", "local"
    entry_type: str  # "envelope", "receipt", "local"
    peer: str
    body: bytes


@dataclass(frozen=True)
class Checkpoint:
    node_id: str
    seq: int
    hash: bytes
    at_us: int


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    checkpoint_bytes: bytes
    signature: bytes
    key_id: str
    wire: bytes


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a receiver answered for one envelope: a signed receipt, or an error."""

    message_id: str
    receipt: SignedReceipt | None = None
    error_code: int = 0
    error_message: str = ""
    # The receiver had the message already and answered with its first receipt.
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.receipt is not None
