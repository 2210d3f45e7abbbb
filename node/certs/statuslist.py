"""The issuer's status list: one signed, compressed bitstring saying which certificates are off.

Every certificate carries an index into its issuer's list, drawn at random when it is issued
(so neighbouring indices say nothing about who got a certificate when). Each entry is two bits,
as in the IETF Token Status List: 0 valid, 1 revoked ("invalid"), 2 suspended. The list is
zlib-compressed; a list of 131,072 entries is 32 KiB raw and a few hundred bytes compressed
while it is sparse.

The issuer publishes the list as a compact JWS (`typ` "statuslist+jwt") signed with its node
key: subject (the list's URI, which certificates name), issuer, issued-at and a time-to-live.
Peers fetch it on a schedule and cache it; a verifier whose cached list is older than its
time-to-live says "status unknown as of <issued-at>", never "valid".
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from federation.keys import KeyHistory
from node.certs import sdjwt
from node.certs.keys import KeyProblem, key_at

TYP = "statuslist+jwt"
BITS = 2
CAPACITY = 1 << 17  # entries per list
VALID, REVOKED, SUSPENDED = 0, 1, 2
STATE_VALUES = {"valid": VALID, "revoked": REVOKED, "suspended": SUSPENDED}
STATE_NAMES = {value: name for name, value in STATE_VALUES.items()}


def list_uri(issuer: str, number: int = 1) -> str:
    """The URI certificates of `issuer` name as their status list."""
    return f"tongban://{issuer}/status/{number}"


def pack_bits(entries: Mapping[int, int], capacity: int = CAPACITY) -> bytes:
    """The zlib-compressed bitstring with `entries` (index -> status) set, the rest 0."""
    raw = bytearray(capacity * BITS // 8)
    for index, value in entries.items():
        if not 0 <= index < capacity or not 0 <= value < (1 << BITS):
            raise ValueError(f"status entry {index}={value} does not fit the list")
        raw[index * BITS // 8] |= value << ((index * BITS) % 8)
    return zlib.compress(bytes(raw), 9)


def unpack_bits(compressed: bytes, limit: int = CAPACITY * BITS // 8) -> bytes:
    """Decompress a bitstring, refusing one that inflates beyond `limit` bytes."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(compressed, limit + 1)
    if len(raw) > limit or inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("the status list is larger than a list may be, or truncated")
    return raw


def entry(raw: bytes, index: int) -> int:
    return (raw[index * BITS // 8] >> ((index * BITS) % 8)) & ((1 << BITS) - 1)


@dataclass(frozen=True)
class StatusStatement:
    """A decoded, signature-checked status list."""

    issuer: str
    uri: str
    issued_at: int  # seconds
    ttl: int  # seconds
    raw: bytes  # the decompressed bitstring

    @property
    def size(self) -> int:
        return len(self.raw) * 8 // BITS

    def status(self, index: int) -> int:
        return entry(self.raw, index)

    def stale(self, now: int) -> bool:
        return now > self.issued_at + self.ttl


def sign(seed: bytes, kid: str, issuer: str, entries: Mapping[int, int], issued_at: int, ttl: int) -> str:
    """The signed status list of `issuer` as it stands at `issued_at` (seconds)."""
    payload = {
        "iss": issuer,
        "sub": list_uri(issuer),
        "iat": issued_at,
        "exp": issued_at + ttl,
        "ttl": ttl,
        "status_list": {"bits": BITS, "lst": sdjwt.b64url(pack_bits(entries))},
    }
    return sdjwt.sign_jws(seed, kid, TYP, payload)


class StatusListError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def open_statement(compact: str, issuer: str, keys: KeyHistory) -> StatusStatement:
    """Check a status list JWS of `issuer` against its key history.

    Raises StatusListError("status_list_invalid", why) for a list that is not this issuer's own.
    """
    try:
        header, payload = sdjwt.split_jws(compact)
    except sdjwt.TokenFormatError as error:
        raise StatusListError(
            "status_list_invalid", f"the status list of {issuer} is unreadable: {error}"
        ) from None
    if header.get("alg") != sdjwt.ALG or header.get("typ") != TYP or set(header) != {"alg", "kid", "typ"}:
        raise StatusListError("status_list_invalid", f"the status list of {issuer} has a wrong header")
    if payload.get("iss") != issuer or payload.get("sub") != list_uri(issuer):
        raise StatusListError(
            "status_list_invalid", f"the status list cached for {issuer} was made by {payload.get('iss')!r}"
        )
    issued_at, ttl = payload.get("iat"), payload.get("ttl")
    if not isinstance(issued_at, int) or not isinstance(ttl, int) or ttl <= 0:
        raise StatusListError("status_list_invalid", f"the status list of {issuer} has no valid times")
    try:
        key = key_at(keys, str(header.get("kid")), issued_at)
    except KeyProblem as problem:
        raise StatusListError("status_list_invalid", f"the status list of {issuer}: {problem}") from None
    if not sdjwt.verify_jws(compact, key.public_key):
        raise StatusListError("status_list_invalid", f"the status list of {issuer} has a bad signature")
    body = payload.get("status_list")
    if not isinstance(body, dict) or body.get("bits") != BITS or not isinstance(body.get("lst"), str):
        raise StatusListError("status_list_invalid", f"the status list of {issuer} has no bitstring")
    try:
        raw = unpack_bits(sdjwt.b64url_decode(body["lst"], "the bitstring"))
    except (ValueError, zlib.error) as error:
        raise StatusListError("status_list_invalid", f"the status list of {issuer}: {error}") from None
    return StatusStatement(issuer, payload["sub"], issued_at, ttl, raw)
