"""The QR payload: a certificate token small enough to print in a 40 mm square.

    TB1:<Base45 of zlib(body)>

Base45 (RFC 9285) uses exactly the QR code's alphanumeric alphabet, so the code stores 5.5 bits
per character instead of 8. The body is the token's parts as raw bytes instead of base64url
text (header JSON, payload JSON, the 64-byte signature, each disclosure's JSON), deflated with
a preset dictionary of the phrases every token repeats (claim names, the header, the status
URI). When the token discloses a field, its digest in the payload can be computed again from the
disclosure, so the body leaves it out and the decoder puts it back (`_sd` is sorted, and the
issuer writes canonical JSON, so the signed bytes come back exactly; if they did not, the
signature check would fail, never pass). The decoder yields the ordinary compact SD-JWT, and
the verifier judges that. The text is a transport encoding, not the signed object: deflate
ignores the padding bits of its last byte, so a few different texts decode to the same token,
just as a QR reader's error correction reads a damaged code as the original.
"""

from __future__ import annotations

import io
import json
import zlib
from typing import Any

import base45

from node.certs import sdjwt

PREFIX = "TB1:"
_FLAG_ELIDED = 1
_MAX_BODY = 16 * 1024

# Phrases that recur in every token; zlib looks back into these as if they had come before.
ZDICT = "".join(
    (
        # field names and type codes of the demo catalog's certificates (others work, less compactly)
        "uscc enterprise_name retirement_date approval_no address result insured_since months_paid ",
        "account_balance as_of business-license retirement-approval medical-insurance-transfer-proof ",
        "household-registration-proof no-criminal-record-proof social-insurance-proof pension-balance-proof ",
        "未发现有犯罪记录 安徽省六安市 江苏省苏州市 县 区 镇 路 号 ",
        # the skeleton of every payload (canonical JSON: sorted keys) and of the header
        '{"_sd":["',
        '"],"_sd_alg":"sha-256","exp":17',
        ',"iat":17,"iss":"cn-3,"jti":"01K,"nbf":17,"purpose":"',
        '","status":{"status_list":{"idx":,"uri":"tongban://cn-/status/1"}},"vct":"',
        '{"alg":"Ed25519","kid":"","typ":"tb-cert+sd-jwt"}',
        '"applicant_name","',
        '"applicant_id","341522',
    )
).encode()


class QrError(sdjwt.TokenFormatError):
    def __init__(self, message: str) -> None:
        super().__init__("malformed", message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(stream: io.BytesIO) -> int:
    value = shift = 0
    while True:
        byte = stream.read(1)
        if not byte or shift > 28:
            raise QrError("the QR payload is truncated")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7


def _read(stream: io.BytesIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise QrError("the QR payload is truncated")
    return data


def _payload_bytes(payload: dict[str, Any], disclosures: list[str], flags: int) -> bytes:
    if flags & _FLAG_ELIDED:
        payload = {**payload, "_sd": sorted([*payload["_sd"], *(sdjwt.digest(d) for d in disclosures)])}
    return sdjwt.canonical_json(payload)


def encode(token: str) -> str:
    """The QR text of a compact SD-JWT."""
    parsed = sdjwt.parse(token)
    header_b64, payload_b64, signature_b64 = parsed.jws.split(".")
    payload_raw = sdjwt.b64url_decode(payload_b64, "payload")
    texts = [d.text for d in parsed.disclosures]
    flags = 0
    body_payload = payload_raw
    mine = {sdjwt.digest(t) for t in texts}
    remaining = [d for d in parsed.payload.get("_sd", []) if d not in mine]
    stripped = {**parsed.payload, "_sd": remaining}
    if _payload_bytes(stripped, texts, _FLAG_ELIDED) == payload_raw:
        flags, body_payload = _FLAG_ELIDED, sdjwt.canonical_json(stripped)
    body = bytearray([flags])
    for part in (sdjwt.b64url_decode(header_b64, "header"), body_payload):
        body += _varint(len(part)) + part
    body += sdjwt.b64url_decode(signature_b64, "signature")
    body += _varint(len(texts))
    for text in texts:
        raw = sdjwt.b64url_decode(text, "disclosure")
        body += _varint(len(raw)) + raw
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT)
    packed = compressor.compress(bytes(body)) + compressor.flush()
    return PREFIX + str(base45.b45encode(packed).decode("ascii"))


def decode(text: str) -> str:
    """The compact SD-JWT inside a QR text; raises QrError (reason "malformed") when it is not one."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise QrError(f"not a tongban certificate QR code (it should start with {PREFIX})")
    try:
        packed = base45.b45decode(text[len(PREFIX) :])
        inflater = zlib.decompressobj(15, ZDICT)
        body = inflater.decompress(packed, _MAX_BODY)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise QrError("the QR payload is truncated or too large")
    except (ValueError, zlib.error):
        raise QrError("the QR payload is damaged: not Base45 of deflated data") from None
    stream = io.BytesIO(body)
    flags = _read(stream, 1)[0]
    if flags & ~_FLAG_ELIDED:
        raise QrError("the QR payload has flags this version does not know")
    header = _read(stream, _read_varint(stream))
    payload_raw = _read(stream, _read_varint(stream))
    signature = _read(stream, 64)
    texts = [sdjwt.b64url(_read(stream, _read_varint(stream))) for _ in range(_read_varint(stream))]
    if stream.read(1):
        raise QrError("the QR payload has bytes after its last part")
    if flags & _FLAG_ELIDED:
        try:
            payload = json.loads(payload_raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise QrError("the QR payload's claims are not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("_sd"), list):
            raise QrError("the QR payload's claims are not an object with digests")
        try:
            payload_raw = _payload_bytes(payload, texts, flags)
        except TypeError:
            raise QrError("the QR payload's digests are not text") from None
    jws = ".".join(sdjwt.b64url(part) for part in (header, payload_raw, signature))
    return jws + "~" + "".join(t + "~" for t in texts)


def looks_like_qr(text: str) -> bool:
    return text.strip().startswith(PREFIX)
