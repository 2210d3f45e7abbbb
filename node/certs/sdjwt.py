"""The certificate token: an SD-JWT whose issuer-signed part is a compact JWS (Ed25519).

    <header>.<payload>.<signature>~<disclosure>~<disclosure>~...~

The JWS header carries `alg` ("Ed25519", RFC 9864's fully specified name for Ed25519 signing),
`typ` and `kid` (the issuing node's federation key ID). The payload carries the claims everyone
may see: issuer (`iss`, the node ID), certificate type (`vct`), unique ID (`jti`), issued,
valid-from and expiry times (`iat`, `nbf`, `exp`, seconds), the purpose, and a status reference
(`status.status_list`: an index into the issuer's status list, see `statuslist`). Personal and
business fields are not in the payload: each is a *disclosure* `[salt, name, value]` beside the
JWS, and the payload holds only the SHA-256 digest of each disclosure (`_sd`, sorted, so their
order says nothing). A holder can drop disclosures a purpose does not need; what remains still
verifies without the issuer signing again (SD-JWT, RFC 9901).

Signing and verification go through joserfc (a maintained JOSE library on `cryptography`); this
module builds the exact bytes, decodes strictly (canonical base64url only, so no two strings
carry the same signature) and leaves the judging to `verify`. JSON is written canonically
(sorted keys, no spaces, UTF-8), which also lets `qr` rebuild the exact signed bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

ALG = "Ed25519"
TYP = "tb-cert+sd-jwt"
SD_ALG = "sha-256"
SALT_BYTES = 16
# Claim names a disclosure may not use: they belong to the signed payload.
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_\-.~]+")
RESERVED = frozenset({"iss", "jti", "vct", "iat", "nbf", "exp", "purpose", "status", "_sd", "_sd_alg", "cnf"})


class TokenFormatError(ValueError):
    """A token that cannot be read; `code` is the verifier's reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")  # standard-alphabet characters become invalid


def b64url_decode(text: str, what: str) -> bytes:
    """Strict base64url without padding: other characters, or unused low bits in the last
    character (which would let two strings carry the same bytes), are refused."""
    tail = len(text) % 4
    if tail == 1 or (tail and _VALUE.get(text[-1], 0) & (0x0F if tail == 2 else 0x03)):
        raise TokenFormatError("malformed", f"{what} is not canonical base64url")
    try:
        raw = text.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(text) % 4)
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise TokenFormatError("malformed", f"{what} is not base64url") from None


def disclosure(salt: str, name: str, value: Any) -> str:
    return b64url(canonical_json([salt, name, value]))


def digest(disclosure_text: str) -> str:
    return b64url(hashlib.sha256(disclosure_text.encode("ascii")).digest())


def new_salt(random_bytes: bytes) -> str:
    if len(random_bytes) != SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} random bytes")
    return b64url(random_bytes)


@dataclass(frozen=True)
class StatusRef:
    uri: str
    idx: int


@dataclass(frozen=True)
class Claims:
    """What the issuer signs, before the personal fields are turned into digests."""

    iss: str
    jti: str
    vct: str
    iat: int  # seconds since the epoch
    nbf: int
    exp: int
    purpose: str
    status: StatusRef

    def payload(self, digests: Sequence[str]) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "jti": self.jti,
            "vct": self.vct,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "purpose": self.purpose,
            "status": {"status_list": {"idx": self.status.idx, "uri": self.status.uri}},
            "_sd": sorted(digests),
            "_sd_alg": SD_ALG,
        }


_ED25519 = jws.JWSRegistry(algorithms=[ALG]).get_alg(ALG)


@cache
def _private_key(seed: bytes) -> OKPKey:
    return OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(seed))


@cache
def public_jwk(public_key: bytes) -> OKPKey:
    """joserfc's key object for a raw Ed25519 public key (kept, as building one costs)."""
    return OKPKey.import_key(Ed25519PublicKey.from_public_bytes(public_key))


def sign_jws(seed: bytes, kid: str, typ: str, payload: Mapping[str, Any]) -> str:
    """A compact JWS over canonical JSON, signed with the Ed25519 key of `seed`."""
    header = {"alg": ALG, "kid": kid, "typ": typ}
    return jws.serialize_compact(header, canonical_json(payload), _private_key(seed), algorithms=[ALG])


def verify_jws(compact: str, public_key: bytes) -> bool:
    """True when `compact` carries a valid Ed25519 signature by `public_key`.

    The caller has parsed the token strictly (`split_jws`, which also fixes the algorithm);
    joserfc's Ed25519 algorithm then checks the signature over the exact signing input, so
    the token is not decoded a second time.
    """
    signing_input, _, signature = compact.rpartition(".")
    try:
        return bool(
            _ED25519.verify(
                signing_input.encode("ascii"), b64url_decode(signature, "signature"), public_jwk(public_key)
            )
        )
    except (JoseError, TokenFormatError, ValueError, TypeError):
        return False


def issue(seed: bytes, kid: str, claims: Claims, fields: Mapping[str, Any], salts: Mapping[str, str]) -> str:
    """The compact SD-JWT: every field becomes a salted disclosure (salts chosen by the caller)."""
    disclosures = []
    for name, value in fields.items():
        if name in RESERVED or name.startswith("_"):
            raise ValueError(f"{name!r} is a reserved claim name and cannot be a certificate field")
        disclosures.append(disclosure(salts[name], name, value))
    signed = sign_jws(seed, kid, TYP, claims.payload([digest(d) for d in disclosures]))
    return signed + "~" + "".join(d + "~" for d in disclosures)


@dataclass(frozen=True, slots=True)
class Disclosure:
    text: str
    salt: str
    name: str
    value: Any

    @property
    def digest(self) -> str:
        return digest(self.text)


@dataclass(frozen=True)
class Token:
    """A token split and decoded, not yet trusted."""

    jws: str
    header: dict[str, Any]
    payload: dict[str, Any]
    disclosures: tuple[Disclosure, ...]

    @property
    def compact(self) -> str:
        return self.jws + "~" + "".join(d.text + "~" for d in self.disclosures)

    def present(self, names: set[str]) -> str:
        """The same token with only the named fields disclosed (no new signature needed)."""
        kept = [d for d in self.disclosures if d.name in names]
        return self.jws + "~" + "".join(d.text + "~" for d in kept)

    @property
    def fields(self) -> dict[str, Any]:
        return {d.name: d.value for d in self.disclosures}


def _json_object(data: bytes, what: str, code: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenFormatError(code, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenFormatError(code, f"{what} is not a JSON object")
    return value


def parse_disclosure(text: str) -> Disclosure:
    raw = b64url_decode(text, "a disclosure")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenFormatError("disclosure_malformed", "a disclosure is not JSON") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not isinstance(value[1], str)
    ):
        raise TokenFormatError("disclosure_malformed", "a disclosure is not [salt, name, value]")
    salt, name, claim = value
    if len(salt) < 16 or name in RESERVED or name.startswith("_") or not name:
        raise TokenFormatError(
            "disclosure_malformed", f"disclosure {name!r} has a short salt or reserved name"
        )
    return Disclosure(text, salt, name, claim)


def split_jws(compact: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, decoded strictly (signature not checked).

    The algorithm is judged before the signature's shape, so that `alg: none` with an empty
    signature is refused as the algorithm it is.
    """
    parts = compact.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise TokenFormatError("malformed", "the signed part is not header.payload.signature")
    header = _json_object(b64url_decode(parts[0], "the JWS header"), "the JWS header", "malformed")
    if header.get("alg") != ALG:
        raise TokenFormatError("alg_not_allowed", f"algorithm {header.get('alg')!r}; only {ALG} is accepted")
    payload = _json_object(b64url_decode(parts[1], "the JWS payload"), "the JWS payload", "malformed")
    signature = b64url_decode(parts[2], "the JWS signature")
    if len(signature) != 64:
        raise TokenFormatError("malformed", "an Ed25519 signature is 64 bytes")
    return header, payload


def parse(text: str) -> Token:
    """Split an SD-JWT into its parts and decode them; raises TokenFormatError with a reason code."""
    text = text.strip()
    if not _TOKEN_CHARACTERS.fullmatch(text):
        raise TokenFormatError("malformed", "a token is one line of base64url, dots and tildes")
    pieces = text.split("~")
    if len(pieces) < 2 or pieces[-1] != "":
        raise TokenFormatError("malformed", "an SD-JWT ends with '~' after its disclosures")
    header, payload = split_jws(pieces[0])
    disclosures = tuple(parse_disclosure(piece) for piece in pieces[1:-1])
    return Token(pieces[0], header, payload, disclosures)
