"""The mutation suite: over 10,000 random tamperings, zero accepted, each refused with its own code.

Every class of tampering has the reason codes it may legitimately produce (a flipped character in
the header may break the JSON, change the algorithm, the type or the key ID, or only the bytes the
signature covers); a verdict of "valid", a code outside the class's set, or an exception fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections import Counter
from collections.abc import Callable

from federation.identity import NodeIdentity
from node.certs import qr, sdjwt, statuslist
from node.certs.verify import REASONS, Verifier
from tests.node.certs.conftest import Issuer, bundle

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HEADER = {
    "malformed",
    "alg_not_allowed",
    "typ_mismatch",
    "header_invalid",
    "key_unknown",
    "signature_invalid",
}
PAYLOAD = {
    "malformed",
    "claims_invalid",
    "issuer_unknown",
    "key_not_valid",
    "type_not_allowed",
    "signature_invalid",
}
SIGNATURE = {"malformed", "signature_invalid"}
DISCLOSURE = {"malformed", "disclosure_malformed", "disclosure_unknown"}
QR = {
    "malformed",
    "alg_not_allowed",
    "header_invalid",
    "typ_mismatch",
    "claims_invalid",
    "key_unknown",
    "issuer_unknown",
    "key_not_valid",
    "type_not_allowed",
    "signature_invalid",
    "disclosure_malformed",
    "disclosure_unknown",
}


def flip(text: str, start: int, end: int, rng: random.Random) -> str:
    """`text` with one character in [start, end) replaced by a different one."""
    position = rng.randrange(start, end)
    old = text[position]
    if rng.random() < 0.8:
        new = rng.choice(ALPHABET.replace(old, ""))
    else:
        new = chr(ord(old) ^ (1 << rng.randrange(7)))
    return text[:position] + new + text[position + 1 :]


def segment_bounds(token: str) -> dict[str, tuple[int, int]]:
    jws, _, _rest = token.partition("~")
    header, payload, signature = jws.split(".")
    a = len(header)
    b = a + 1 + len(payload)
    c = b + 1 + len(signature)
    return {
        "header": (0, a),
        "payload": (a + 1, b),
        "signature": (b + 1, c),
        "disclosures": (c + 1, len(token) - 1),
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_header(token: str, header: dict[str, object], signer: Callable[[bytes], bytes]) -> str:
    jws, _, rest = token.partition("~")
    _, payload, _ = jws.split(".")
    head = b64(json.dumps(header).encode())
    return f"{head}.{payload}.{b64(signer(f'{head}.{payload}'.encode()))}~{rest}"


def test_ten_thousand_tamperings_none_accepted_each_with_its_own_code(
    huoqiu: Issuer, make_issuer: Callable[[str], Issuer]
) -> None:
    rng = random.Random(20261122)
    # The issuer rotates once, so that "a retired key" exists; base tokens come from the current key.
    old_seed, old_kid = huoqiu.identity.signer.seed, huoqiu.identity.signer.key_id
    huoqiu.rotate()
    trust = bundle(huoqiu.trust())
    verifier = Verifier(trust, clock=lambda: huoqiu.now + 60)
    tokens = [huoqiu.token(iat=huoqiu.now, index=i) for i in range(24)]
    for token in tokens:
        assert verifier.verify(token).valid
    codes: Counter[str] = Counter()
    tried = 0

    def refused(candidate: str, allowed: set[str], what: str, check: Verifier = verifier) -> None:
        nonlocal tried
        tried += 1
        verdict = check.verify(candidate)
        assert not verdict.valid, f"false accept ({what}): {candidate}"
        assert verdict.code in allowed, (
            f"{what}: refused as {verdict.code}, expected one of {sorted(allowed)}"
        )
        assert verdict.code in REASONS
        assert verdict.code != "ok"
        codes[verdict.code] += 1

    # Byte flips in header, payload, signature and disclosures.
    for what, allowed, count in (
        ("header", HEADER, 2500),
        ("payload", PAYLOAD, 2500),
        ("signature", SIGNATURE, 2000),
        ("disclosures", DISCLOSURE, 1500),
    ):
        for _ in range(count):
            token = rng.choice(tokens)
            start, end = segment_bounds(token)[what]
            mutated = flip(token, start, end, rng)
            if what == "disclosures" and mutated[start:end].count("~") != token[start:end].count("~"):
                allowed = DISCLOSURE | {"disclosure_duplicate"}
            refused(mutated, allowed, what)

    # Disclosures swapped in from another certificate of the same person, or duplicated.
    for _ in range(600):
        a, b = rng.sample(tokens, 2)
        ta, tb = sdjwt.parse(a), sdjwt.parse(b)
        swapped = [*ta.disclosures]
        swapped[rng.randrange(len(swapped))] = rng.choice(tb.disclosures)
        refused(
            ta.jws + "~" + "".join(d.text + "~" for d in swapped),
            {"disclosure_unknown"},
            "swapped disclosure",
        )
    for _ in range(600):
        ta = sdjwt.parse(rng.choice(tokens))
        items = [*ta.disclosures]
        items.insert(rng.randrange(len(items) + 1), rng.choice(ta.disclosures))
        refused(
            ta.jws + "~" + "".join(d.text + "~" for d in items),
            {"disclosure_duplicate"},
            "duplicated disclosure",
        )

    # alg "none" and HS256 keyed with the issuer's public key (the classic confusion attack).
    public = huoqiu.identity.keys.current.public_key
    for _ in range(300):
        token = rng.choice(tokens)
        kid = huoqiu.identity.signer.key_id
        refused(
            with_header(token, {"alg": "none", "kid": kid, "typ": sdjwt.TYP}, lambda _: b""),
            {"alg_not_allowed"},
            "none",
        )
        refused(
            with_header(
                token,
                {"alg": "HS256", "kid": kid, "typ": sdjwt.TYP},
                lambda data: hmac.new(public, data, hashlib.sha256).digest(),
            ),
            {"alg_not_allowed"},
            "HS256",
        )

    # Unknown key, a retired key used after its window, a type the issuer's catalog does not list.
    stranger = NodeIdentity.create(huoqiu.identity.folder.parent / "stranger", "cn-341522", "x")
    for _ in range(200):
        refused(
            huoqiu.token(iat=huoqiu.now, seed=stranger.signer.seed, kid=stranger.signer.key_id),
            {"key_unknown"},
            "unknown key",
        )
        refused(
            huoqiu.token(iat=huoqiu.now + 600, seed=old_seed, kid=old_kid), {"key_not_valid"}, "retired key"
        )
        refused(
            huoqiu.token(iat=huoqiu.now, vct="no-criminal-record-proof"),
            {"type_not_allowed"},
            "type not allowed",
        )

    # An old status list, and a status list signed by another node.
    stale = Verifier(
        bundle(huoqiu.trust(huoqiu.status_list(iat=huoqiu.now, ttl=60))), clock=lambda: huoqiu.now + 3600
    )
    other = make_issuer("cn-320509")
    foreign = statuslist.sign(
        other.identity.signer.seed, other.identity.signer.key_id, huoqiu.node_id, {}, huoqiu.now, 3600
    )
    forged = Verifier(bundle(huoqiu.trust(foreign)), clock=lambda: huoqiu.now + 60)
    for _ in range(250):
        refused(rng.choice(tokens), {"status_stale"}, "old status list", stale)
        refused(rng.choice(tokens), {"status_list_invalid"}, "foreign status list", forged)

    # Flips in the QR text itself. Deflate ignores the padding bits of its last byte, so a few
    # flips there decode to the very same token: not a tampering of the certificate (the QR text
    # is a transport encoding, like a QR reader's error correction), and counted apart.
    texts = {qr.encode(t): t for t in tokens[:8]}
    same = 0
    for _ in range(1000):
        text = rng.choice(list(texts))
        mutated = flip(text, len(qr.PREFIX), len(text), rng)
        try:
            candidate = qr.decode(mutated)
        except sdjwt.TokenFormatError:
            tried += 1
            codes["malformed"] += 1
            continue
        if candidate == texts[text]:
            same += 1
            assert verifier.verify(candidate).valid
            continue
        refused(candidate, QR, "QR flip")
    assert same < 50

    assert tried >= 10_000
    # Every class was exercised and produced its own codes.
    for code in (
        "alg_not_allowed",
        "key_unknown",
        "key_not_valid",
        "type_not_allowed",
        "signature_invalid",
        "disclosure_unknown",
        "disclosure_duplicate",
        "status_stale",
        "status_list_invalid",
        "malformed",
    ):
        assert codes[code] > 0, f"no tampering was refused as {code}: {codes}"
