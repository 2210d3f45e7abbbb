"""Signing and opening envelopes and receipts.

`seal` serializes an envelope once and signs those bytes; `seal_many` signs many envelopes with
one signature over the Merkle tree of their digests (see federation.merkle and the top of
proto/tongban_api/v1/envelope.proto), giving each its audit path. `open_envelope` parses what
arrived without trusting it, and `verify_envelope` checks the signature against the sender's key
history over the stored bytes. Receipts work the same way. Nothing here touches storage or the
network.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

from federation import merkle, wire
from federation.keys import (
    CONTEXT_BATCH,
    CONTEXT_ENVELOPE,
    CONTEXT_RECEIPT,
    KeyHistory,
    SignatureError,
    Signer,
)
from federation.units import BatchProof, Envelope, Receipt, SealedEnvelope, SignedReceipt

# The most envelopes one signature covers: audit paths stay at most 10 hashes long.
BATCH_LIMIT = 1024


def seal(envelope: Envelope, signer: Signer) -> SealedEnvelope:
    """Serialize and sign an envelope."""
    data = wire.envelope_bytes(envelope)
    signature = signer.sign(CONTEXT_ENVELOPE, data)
    return SealedEnvelope(
        envelope=envelope,
        envelope_bytes=data,
        signature=signature,
        key_id=signer.key_id,
        wire=wire.signed_envelope_bytes(data, signature, signer.key_id),
        sha256=hashlib.sha256(data).digest(),
    )


def seal_many(envelopes: Sequence[Envelope], signer: Signer) -> list[SealedEnvelope]:
    """Serialize and sign envelopes, one signature per batch of up to BATCH_LIMIT.

    Put only envelopes to one recipient together: each carries the hashes of its batch mates.
    """
    sealed: list[SealedEnvelope] = []
    for start in range(0, len(envelopes), BATCH_LIMIT):
        part = envelopes[start : start + BATCH_LIMIT]
        if len(part) == 1:
            sealed.append(seal(part[0], signer))
            continue
        datas = [wire.envelope_bytes(envelope) for envelope in part]
        digests = [hashlib.sha256(data).digest() for data in datas]
        root, paths = merkle.tree([merkle.leaf_hash(digest) for digest in digests])
        size = len(part)
        signature = signer.sign(CONTEXT_BATCH, _batch_statement(size, root))
        for index, envelope in enumerate(part):
            proof = BatchProof(index, size, tuple(paths[index]))
            sealed.append(
                SealedEnvelope(
                    envelope=envelope,
                    envelope_bytes=datas[index],
                    signature=signature,
                    key_id=signer.key_id,
                    wire=wire.signed_envelope_bytes(datas[index], signature, signer.key_id, proof),
                    sha256=digests[index],
                    batch=proof,
                )
            )
    return sealed


def _batch_statement(size: int, root: bytes) -> bytes:
    return size.to_bytes(8, "big") + root


def signed_statement(sealed: SealedEnvelope) -> tuple[bytes, bytes]:
    """(context, data) that the envelope's signature covers: the envelope itself, or its batch.

    Raises SignatureError when a batch proof cannot belong to this envelope.
    """
    batch = sealed.batch
    if batch is None:
        return CONTEXT_ENVELOPE, sealed.envelope_bytes
    try:
        root = merkle.root_from_path(batch.index, batch.size, merkle.leaf_hash(sealed.sha256), batch.path)
    except merkle.ProofError as error:
        raise SignatureError(
            f"the batch proof of envelope {sealed.envelope.message_id} does not hold: {error}"
        ) from None
    return CONTEXT_BATCH, _batch_statement(batch.size, root)


class VerifiedBatches:
    """Batch signatures already found good, so that a batch costs one Ed25519 check, not one
    per envelope. Bounded: the oldest are forgotten first. Safe to share between threads."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: dict[tuple[bytes, bytes, bytes], None] = {}
        self._lock = threading.Lock()

    def __contains__(self, item: tuple[bytes, bytes, bytes]) -> bool:
        return item in self._seen

    def add(self, item: tuple[bytes, bytes, bytes]) -> None:
        with self._lock:
            self._seen[item] = None
            while len(self._seen) > self._limit:
                del self._seen[next(iter(self._seen))]


def open_envelope(data: bytes) -> SealedEnvelope:
    """Parse a serialized SignedEnvelope; raises WireError. The signature is not checked here."""
    envelope_bytes, signature, key_id, batch = wire.decode_signed_envelope(data)
    return SealedEnvelope(
        envelope=wire.decode_envelope(envelope_bytes),
        envelope_bytes=envelope_bytes,
        signature=signature,
        key_id=key_id,
        wire=data,
        sha256=hashlib.sha256(envelope_bytes).digest(),
        batch=batch,
    )


def verify_envelope(
    sealed: SealedEnvelope, sender_keys: KeyHistory, verified: VerifiedBatches | None = None
) -> None:
    """Raise SignatureError unless the sender's key signed these exact bytes in its window
    (alone, or in a batch through the envelope's audit path). With `verified`, a batch whose
    signature was checked before is not checked again."""
    key = sender_keys.key_at(sealed.key_id, sealed.envelope.created_at_us)
    context, statement = signed_statement(sealed)
    remembered = (key.public_key, statement, sealed.signature)
    if verified is not None and sealed.batch is not None and remembered in verified:
        return
    if not key.verify(context, statement, sealed.signature):
        raise SignatureError(f"signature does not verify with key {key.key_id} of {sender_keys.node_id}")
    if verified is not None and sealed.batch is not None:
        verified.add(remembered)


def sign_receipt(receipt: Receipt, signer: Signer) -> SignedReceipt:
    data = wire.receipt_bytes(receipt)
    signature = signer.sign(CONTEXT_RECEIPT, data)
    return SignedReceipt(
        receipt=receipt,
        receipt_bytes=data,
        signature=signature,
        key_id=signer.key_id,
        wire=wire.signed_receipt_bytes(data, signature, signer.key_id),
    )


def open_receipt(data: bytes) -> SignedReceipt:
    receipt_bytes, signature, key_id = wire.decode_signed_receipt(data)
    return SignedReceipt(
        receipt=wire.decode_receipt(receipt_bytes),
        receipt_bytes=receipt_bytes,
        signature=signature,
        key_id=key_id,
        wire=data,
    )


def verify_receipt(signed: SignedReceipt, receiver_keys: KeyHistory) -> None:
    receiver_keys.verify(
        CONTEXT_RECEIPT, signed.receipt_bytes, signed.signature, signed.key_id, signed.receipt.received_at_us
    )
