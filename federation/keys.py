"""Ed25519 signing keys: this node's own signer, and the key histories of nodes.

A node signs with one current key. Rotating makes a new key that the previous key endorses, so
a peer that trusts the old key can trust the new one without asking an operator. Old public keys
stay in the history with their windows: key *i* signs from its `valid_from` until the next key's
`valid_from`, which is how a message signed before a rotation still verifies after it.

Every signature is made over a context string followed by the exact bytes (see
proto/tongban_api/v1/envelope.proto), so that an envelope signature can never pass for a
receipt signature and so on. Signing and verification use libsodium through PyNaCl: on the
machines here it verifies about twice as fast as OpenSSL's Ed25519, and it releases the GIL, so
bulk verification can use a second core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

CONTEXT_ENVELOPE = b"tongban.v1.Envelope\n"
CONTEXT_BATCH = b"tongban.v1.EnvelopeBatch\n"
CONTEXT_RECEIPT = b"tongban.v1.Receipt\n"
CONTEXT_CHECKPOINT = b"tongban.v1.Checkpoint\n"
CONTEXT_ENDORSEMENT = b"tongban.v1.KeyEndorsement\n"
CONTEXT_JOIN_PROOF = b"tongban.v1.JoinProof\n"

# How far a sender's clock may run ahead of a key's window before a signature is refused.
CLOCK_SKEW_US = 5 * 60 * 1_000_000


class SignatureError(Exception):
    """A signature that does not hold; the message says which key and why."""


def key_id_of(public_key: bytes) -> str:
    """A key's fingerprint: hex of the first 16 bytes of SHA-256 over the raw public key."""
    return hashlib.sha256(public_key).digest()[:16].hex()


@dataclass(frozen=True)
class Endorsement:
    """What a previous key signed when its node rotated to a new key (decoded view)."""

    node_id: str
    key_id: str
    public_key: bytes
    valid_from_us: int
    previous_key_id: str


@dataclass(frozen=True)
class PublicKey:
    """One signing key of a node as others see it."""

    key_id: str
    public_key: bytes
    valid_from_us: int
    endorsement: Endorsement | None = None
    endorsement_bytes: bytes = b""
    endorsement_signature: bytes = b""

    def verify(self, context: bytes, data: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's signature over context + data."""
        if len(signature) != nacl.bindings.crypto_sign_BYTES:
            return False
        try:
            # libsodium's own call, without PyNaCl's key and message objects around it.
            nacl.bindings.crypto_sign_open(signature + context + data, self.public_key)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True


@dataclass(frozen=True)
class KeyHistory:
    """All signing keys of one node, oldest first; the last is the current one."""

    node_id: str
    keys: tuple[PublicKey, ...] = field(default=())

    @property
    def current(self) -> PublicKey:
        return self.keys[-1]

    def find(self, key_id: str) -> PublicKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def window(self, key_id: str) -> tuple[int, int | None]:
        """(valid_from, valid_until) of a key in microseconds; until is None for the current key."""
        for index, key in enumerate(self.keys):
            if key.key_id == key_id:
                until = self.keys[index + 1].valid_from_us if index + 1 < len(self.keys) else None
                return key.valid_from_us, until
        raise KeyError(key_id)

    def verify(
        self, context: bytes, data: bytes, signature: bytes, key_id: str, at_us: int | None = None
    ) -> None:
        """Check a signature by key `key_id`, made at `at_us` (inside the key's window).

        Raises SignatureError naming the key and the node when it does not hold.
        """
        key = self.key_at(key_id, at_us)
        if not key.verify(context, data, signature):
            raise SignatureError(f"signature does not verify with key {key_id} of {self.node_id}")

    def key_at(self, key_id: str, at_us: int | None = None) -> PublicKey:
        """Key `key_id`, provided it was in use at `at_us`; raises SignatureError otherwise."""
        key = self.find(key_id)
        if key is None:
            raise SignatureError(f"key {key_id} is not a signing key of {self.node_id}")
        if at_us is not None:
            start, until = self.window(key_id)
            if at_us + CLOCK_SKEW_US < start or (until is not None and at_us >= until + CLOCK_SKEW_US):
                raise SignatureError(
                    f"key {key_id} of {self.node_id} was not in use at the time the message claims"
                )
        return key

    def validate(self) -> None:
        """Check the endorsement chain: each key after the first is endorsed by its predecessor.

        Raises SignatureError saying which link is broken.
        """
        if not self.keys:
            raise SignatureError(f"{self.node_id} presented no signing key")
        seen: set[str] = set()
        for index, key in enumerate(self.keys):
            if key_id_of(key.public_key) != key.key_id:
                raise SignatureError(f"key {key.key_id} of {self.node_id} does not match its public key")
            if key.key_id in seen:
                raise SignatureError(f"key {key.key_id} of {self.node_id} appears twice")
            seen.add(key.key_id)
            if index == 0:
                continue
            previous = self.keys[index - 1]
            endorsement = key.endorsement
            if (
                endorsement is None
                or endorsement.node_id != self.node_id
                or endorsement.key_id != key.key_id
                or endorsement.public_key != key.public_key
                or endorsement.valid_from_us != key.valid_from_us
                or endorsement.previous_key_id != previous.key_id
            ):
                raise SignatureError(f"key {key.key_id} of {self.node_id} carries no matching endorsement")
            if key.valid_from_us <= previous.valid_from_us:
                raise SignatureError(f"key {key.key_id} of {self.node_id} starts before its predecessor")
            if not previous.verify(CONTEXT_ENDORSEMENT, key.endorsement_bytes, key.endorsement_signature):
                raise SignatureError(
                    f"key {key.key_id} of {self.node_id} is not endorsed by its predecessor {previous.key_id}"
                )

    def accepts_update(self, newer: KeyHistory) -> bool:
        """True when `newer` keeps every key of this history, in order, and adds only after them."""
        if newer.node_id != self.node_id or len(newer.keys) < len(self.keys):
            return False
        return all(
            a.key_id == b.key_id and a.public_key == b.public_key
            for a, b in zip(self.keys, newer.keys, strict=False)
        )


class Signer:
    """This node's current private signing key."""

    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        # The secret key as libsodium takes it (seed and public key), for signing without wrappers.
        self.public_key, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> Signer:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, context: bytes, data: bytes) -> bytes:
        """Ed25519 signature over context + data."""
        return bytes(
            nacl.bindings.crypto_sign(context + data, self._secret)[: nacl.bindings.crypto_sign_BYTES]
        )


def verify_many(
    history: KeyHistory, items: Sequence[tuple[bytes, bytes, bytes, str, int | None]]
) -> list[SignatureError | None]:
    """Verify (context, data, signature, key_id, at_us) items; None where the signature holds."""
    results: list[SignatureError | None] = []
    for context, data, signature, key_id, at_us in items:
        try:
            history.verify(context, data, signature, key_id, at_us)
        except SignatureError as error:
            results.append(error)
        else:
            results.append(None)
    return results
