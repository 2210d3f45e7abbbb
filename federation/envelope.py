"""Signing and opening envelopes and receipts.

`seal` serializes an envelope once and signs those bytes; `open_envelope` parses what arrived
without trusting it, and `verify_envelope` checks the signature against the sender's key history
over the stored bytes. Receipts work the same way. Nothing here touches storage or the network.
"""

from __future__ import annotations

import hashlib

from federation import wire
from federation.keys import CONTEXT_ENVELOPE, CONTEXT_RECEIPT, KeyHistory, Signer
from federation.units import Envelope, Receipt, SealedEnvelope, SignedReceipt


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


def open_envelope(data: bytes) -> SealedEnvelope:
    """Parse a serialized SignedEnvelope; raises WireError. The signature is not checked here."""
    envelope_bytes, signature, key_id = wire.decode_signed_envelope(data)
    return SealedEnvelope(
        envelope=wire.decode_envelope(envelope_bytes),
        envelope_bytes=envelope_bytes,
        signature=signature,
        key_id=key_id,
        wire=data,
        sha256=hashlib.sha256(envelope_bytes).digest(),
    )


def verify_envelope(sealed: SealedEnvelope, sender_keys: KeyHistory) -> None:
    """Raise SignatureError unless the sender's key signed these exact bytes in its window."""
    sender_keys.verify(
        CONTEXT_ENVELOPE,
        sealed.envelope_bytes,
        sealed.signature,
        sealed.key_id,
        sealed.envelope.created_at_us,
    )


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
