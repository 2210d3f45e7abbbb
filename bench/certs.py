"""Certificate benchmark: issue and verify rates against raw Ed25519, and QR payload lengths.

Baselines, measured in the same run on the same machine:

* raw Ed25519 sign and verify with `cryptography` (OpenSSL), the primitive library joserfc
  signs and verifies with. This is the fair comparison: the ratio then says what the certificate
  format itself costs (JOSE header and payload, strict base64url, canonical JSON, disclosure
  digests, the five checks, the status-list lookup) on top of the very same signature code;
* raw Ed25519 with PyNaCl (libsodium), the federation's own envelope signatures, for reference.

Measured:

* issue: what the node does before the `cert.issue` event: salts for every field, the
  disclosures and their digests, canonical JSON, the JWS signature; a pension-balance
  certificate with four fields;
* verify: `Verifier.verify` on that token with cached trust data: all five checks (the issuer's
  status list opened once and kept, as `cert verify` does across a batch);
* the QR payload length of every certificate type in the demo catalogs (config/catalog-*.toml),
  with realistic field values (target: at most 700 characters each).

The last line prints the ratios: verify / raw verify (target at least 0.5), issue / raw sign,
and the longest QR payload against its 700-character budget.

    .venv/bin/python bench/certs.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nacl.signing  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from ulid import ULID  # noqa: E402

from federation.identity import NodeIdentity  # noqa: E402
from node.certs import kinds, qr, sdjwt, statuslist  # noqa: E402
from node.certs.trust import IssuerTrust, TrustBundle  # noqa: E402
from node.certs.verify import Verifier  # noqa: E402

QR_BUDGET = 700


def rates(steps: dict[str, Callable[[], object]], seconds: float, rounds: int = 25) -> dict[str, float]:
    """Operations per second of each step: the rounds take turns (so that a busy moment of the
    machine falls on all of them alike) and each step's best round counts."""
    best = dict.fromkeys(steps, 0.0)
    for step in steps.values():  # warm up
        for _ in range(100):
            step()
    for _ in range(rounds):
        for label, step in steps.items():
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / rounds:
                for _ in range(50):
                    step()
                done += 50
            best[label] = max(best[label], done / (time.perf_counter() - started))
    for label, per_second in best.items():
        print(f"{label:<46} {per_second:>10,.0f} /s   {1e6 / per_second:>7.1f} µs each")
    return best


def demo_types() -> list[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "config").glob("catalog-*.toml")):
        for item in tomllib.loads(path.read_text(encoding="utf-8")).get("item", []):
            found.update(item.get("certificate_types", []))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="per measurement (in 25 interleaved rounds)"
    )
    args = parser.parse_args()
    seconds = args.seconds

    identity = NodeIdentity.create(Path(tempfile.mkdtemp()) / "keys", "cn-341522", "霍邱县政务服务中心")
    signer = identity.signer
    now = int(time.time())
    ctype = kinds.certificate_type("pension-balance-proof")
    fields = kinds.example_fields(ctype)

    def claims(vct: str = ctype.code) -> sdjwt.Claims:
        return sdjwt.Claims(
            iss="cn-341522",
            jti=str(ULID()),
            vct=vct,
            iat=now,
            nbf=now,
            exp=now + 90 * 86400,
            purpose="养老保险个人账户一次性提取",
            status=sdjwt.StatusRef(statuslist.list_uri("cn-341522"), secrets.randbelow(statuslist.CAPACITY)),
        )

    def issue(vct: str = ctype.code, chosen: dict[str, str] = fields) -> str:
        salts = {name: sdjwt.new_salt(secrets.token_bytes(sdjwt.SALT_BYTES)) for name in chosen}
        return sdjwt.issue(signer.seed, signer.key_id, claims(vct), chosen, salts)

    token = issue()
    types = demo_types()
    trust = TrustBundle.of(
        "cn-320509",
        now,
        [
            IssuerTrust(
                "cn-341522",
                "霍邱县政务服务中心",
                identity.keys,
                frozenset(types),
                statuslist.sign(signer.seed, signer.key_id, "cn-341522", {7: statuslist.REVOKED}, now, 3600),
                now,
            )
        ],
    )
    verifier = Verifier(trust)
    verdict = verifier.verify(token)
    assert verdict.valid, verdict.checks

    message = token.split("~")[0].rsplit(".", 1)[0].encode()  # the bytes a certificate signature covers
    openssl_key = Ed25519PrivateKey.from_private_bytes(signer.seed)
    openssl_public = openssl_key.public_key()
    openssl_signature = openssl_key.sign(message)
    sodium_key = nacl.signing.SigningKey(signer.seed)
    sodium_signed = sodium_key.sign(message)
    sodium_verify = sodium_key.verify_key

    print(
        f"certificate: {ctype.code}, {len(fields)} fields, token {len(token)} characters, signing input {len(message)} bytes"
    )
    measured = rates(
        {
            "baseline: raw Ed25519 sign (cryptography)": lambda: openssl_key.sign(message),
            "baseline: raw Ed25519 verify (cryptography)": lambda: openssl_public.verify(
                openssl_signature, message
            ),
            "reference: raw Ed25519 sign (PyNaCl)": lambda: sodium_key.sign(message),
            "reference: raw Ed25519 verify (PyNaCl)": lambda: sodium_verify.verify(sodium_signed),
            "issue a certificate (SD-JWT, 4 disclosures)": issue,
            "verify a certificate (5 checks)": lambda: verifier.verify(token),
        },
        seconds * 6,
    )
    raw_sign, raw_verify, nacl_sign, nacl_verify, issued, verified = measured.values()

    print("\nQR payload length per certificate type of the demo catalogs (budget 700):")
    longest = 0
    for code in types:
        kind = kinds.certificate_type(code)
        text = qr.encode(issue(code, kinds.example_fields(kind)))
        longest = max(longest, len(text))
        flag = "" if len(text) <= QR_BUDGET else "  OVER BUDGET"
        print(f"  {code:<36} {len(text):>4} characters ({len(kind.fields) + 2} fields){flag}")

    print(
        f"\nagainst PyNaCl: verify {verified / nacl_verify:.2f}, issue {issued / nacl_sign:.2f} "
        "(libsodium is faster than OpenSSL here; joserfc has no libsodium backend)"
    )
    print(
        f"ratios: verify/raw_verify {verified / raw_verify:.2f} (target >= 0.5), "
        f"issue/raw_sign {issued / raw_sign:.2f}, longest QR {longest}/{QR_BUDGET} = {longest / QR_BUDGET:.2f}"
    )


if __name__ == "__main__":
    main()
