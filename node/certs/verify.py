"""The verifier: five checks, each with its own result and reason code; valid only if all pass.

    format     the token reads as an SD-JWT of ours: strict base64url, JSON, header
               (`alg` Ed25519 only: no "none", no HMAC), required claims, well-formed disclosures
    issuer     the issuer is known, the key (`kid`) is one of its keys and was in use at `iat`,
               and the issuer's catalog lists the certificate type
    integrity  the signature holds, and every disclosure's digest is one the issuer signed,
               none twice
    validity   now lies between valid-from and expiry
    status     the issuer's signed status list (cached) is its own, fresh, and says "valid"

A check that cannot run because an earlier one failed is `skipped`. A status list older than
its time-to-live gives `unknown` ("status unknown as of T"), which is never valid. Reason codes
are stable strings (`REASONS`), so scripts and the mutation suite can tell refusals apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from node.certs import sdjwt, statuslist
from node.certs.keys import KeyProblem, key_at
from node.certs.trust import IssuerTrust, TrustBundle


@lru_cache(maxsize=4096)  # the same few instants recur across a batch (list dates, expiries)
def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


CHECKS = ("format", "issuer", "integrity", "validity", "status")

REASONS: dict[str, str] = {
    "ok": "the check passed",
    "malformed": "the token is not a well-formed SD-JWT (base64url, JSON, parts)",
    "alg_not_allowed": "the signature algorithm is not Ed25519",
    "typ_mismatch": "the token's type header is not a tongban certificate's",
    "header_invalid": "the header lacks a key ID or carries parameters a verifier must not ignore",
    "claims_invalid": "a required claim is missing or of the wrong kind",
    "disclosure_malformed": "a disclosure is not [salt, name, value] or uses a reserved name",
    "issuer_unknown": "no trust data for this issuer",
    "key_unknown": "the key ID is not one of the issuer's keys",
    "key_not_valid": "the issuer's key was not in use when the certificate says it was issued",
    "type_not_allowed": "the issuer's catalog does not list this certificate type",
    "types_unknown": "the issuer's catalog is not known here, so its certificate types cannot be checked",
    "signature_invalid": "the signature does not verify with the issuer's key",
    "disclosure_unknown": "a disclosure was not signed by the issuer (swapped in or altered)",
    "disclosure_duplicate": "a disclosure or field appears twice",
    "not_yet_valid": "the certificate is not valid yet",
    "expired": "the certificate has expired",
    "status_unavailable": "no status list of this issuer is cached here",
    "status_list_invalid": "the cached status list is not the issuer's own signed list",
    "status_list_mismatch": "the certificate names another status list than the issuer's",
    "status_index_invalid": "the certificate's status index lies outside the status list",
    "status_stale": "the cached status list is older than its time-to-live: status unknown",
    "revoked": "the issuer revoked the certificate",
    "suspended": "the issuer suspended the certificate",
    "status_value_invalid": "the status list holds a value that means nothing",
    "skipped": "not checked, because an earlier check failed",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    result: str  # pass | fail | unknown | skipped
    code: str
    detail: str = ""


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    token: sdjwt.Token | None = None

    @classmethod
    def unreadable(cls, code: str, detail: str) -> Verdict:
        """The verdict on input that holds no token at all (a damaged file, a foreign PDF)."""
        skipped = [Check(name, "skipped", "skipped", "an earlier check failed") for name in CHECKS[1:]]
        return cls([Check("format", "fail", code, detail), *skipped])

    @property
    def valid(self) -> bool:
        return len(self.checks) == len(CHECKS) and all(c.result == "pass" for c in self.checks)

    @property
    def code(self) -> str:
        """The reason code of the first check that did not pass ("ok" when valid)."""
        for check in self.checks:
            if check.result != "pass":
                return check.code
        return "ok"

    @property
    def claims(self) -> dict[str, Any]:
        return dict(self.token.payload) if self.token else {}

    @property
    def fields(self) -> dict[str, Any]:
        return self.token.fields if self.token else {}


class _Refused(Exception):
    def __init__(self, code: str, detail: str, result: str = "fail") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.result = result


def _require_int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Refused("claims_invalid", f"claim {name!r} is missing or not a time in seconds")
    return value


def _check_format(text: str) -> tuple[sdjwt.Token, str]:
    try:
        token = sdjwt.parse(text)
    except sdjwt.TokenFormatError as error:
        raise _Refused(error.code, str(error)) from None
    header, payload = token.header, token.payload
    if header.get("alg") != sdjwt.ALG:
        raise _Refused("alg_not_allowed", f"algorithm {header.get('alg')!r}; only Ed25519 is accepted")
    if header.get("typ") != sdjwt.TYP:
        raise _Refused("typ_mismatch", f"type {header.get('typ')!r}, expected {sdjwt.TYP}")
    if not isinstance(header.get("kid"), str) or set(header) != {"alg", "kid", "typ"}:
        raise _Refused("header_invalid", "the header must carry exactly alg, kid and typ")
    for name in ("iss", "jti", "vct", "purpose"):
        if not isinstance(payload.get(name), str) or (name != "purpose" and not payload[name]):
            raise _Refused("claims_invalid", f"claim {name!r} is missing or not text")
    iat, nbf, exp = (_require_int(payload, n) for n in ("iat", "nbf", "exp"))
    if not iat <= nbf < exp:
        raise _Refused("claims_invalid", "issued, valid-from and expiry are out of order")
    status = payload.get("status")
    reference = status.get("status_list") if isinstance(status, dict) else None
    if (
        not isinstance(reference, dict)
        or not isinstance(reference.get("uri"), str)
        or not isinstance(reference.get("idx"), int)
        or isinstance(reference.get("idx"), bool)
    ):
        raise _Refused("claims_invalid", "the status reference is missing")
    digests = payload.get("_sd")
    if (
        payload.get("_sd_alg") != sdjwt.SD_ALG
        or not isinstance(digests, list)
        or not all(isinstance(d, str) for d in digests)
        or len(set(digests)) != len(digests)
    ):
        raise _Refused("claims_invalid", "the disclosure digests are missing or repeated")
    extra = set(payload) - sdjwt.RESERVED
    if extra:
        raise _Refused("claims_invalid", f"unexpected claims {sorted(extra)}")
    return token, f"SD-JWT with {len(token.disclosures)} disclosed field(s)"


def read_token(text: str) -> sdjwt.Token:
    """The token, if it passes the format check; TokenFormatError with the reason code if not."""
    try:
        return _check_format(text)[0]
    except _Refused as refused:
        raise sdjwt.TokenFormatError(refused.code, refused.detail) from None


def _check_issuer(token: sdjwt.Token, trust: TrustBundle) -> tuple[IssuerTrust, bytes, str]:
    iss, vct = token.payload["iss"], token.payload["vct"]
    issuer = trust.issuers.get(iss)
    if issuer is None:
        raise _Refused(
            "issuer_unknown", f"{iss} is not an issuer known here (not a peer, or trust data not refreshed)"
        )
    try:
        key = key_at(issuer.keys, token.header["kid"], token.payload["iat"])
    except KeyProblem as problem:
        raise _Refused(problem.code, str(problem)) from None
    if issuer.types is None:
        raise _Refused("types_unknown", f"the catalog of {iss} is not cached here; refresh the trust data")
    if vct not in issuer.types:
        raise _Refused("type_not_allowed", f"the catalog of {iss} does not list certificate type {vct!r}")
    return issuer, key.public_key, f"{iss} {issuer.name}, key {key.key_id[:12]}…, type {vct}"


def _check_integrity(token: sdjwt.Token, public_key: bytes) -> str:
    if not sdjwt.verify_jws(token.jws, public_key):
        raise _Refused("signature_invalid", "the issuer's signature does not cover this token")
    signed = set(token.payload["_sd"])
    seen: set[str] = set()
    names: set[str] = set()
    for item in token.disclosures:
        value = item.digest
        if value not in signed:
            raise _Refused("disclosure_unknown", f"field {item.name!r} was not signed by the issuer")
        if value in seen or item.name in names:
            raise _Refused("disclosure_duplicate", f"field {item.name!r} is disclosed twice")
        seen.add(value)
        names.add(item.name)
    return f"signature holds; {len(token.disclosures)} of {len(signed)} fields disclosed"


def _check_validity(token: sdjwt.Token, now: int) -> str:
    nbf, exp = token.payload["nbf"], token.payload["exp"]
    if now < nbf:
        raise _Refused("not_yet_valid", f"valid from {_iso(nbf)}")
    if now >= exp:
        raise _Refused("expired", f"expired {_iso(exp)}")
    return f"valid {_iso(nbf)} to {_iso(exp)}"


class Verifier:
    """Verifies tokens against one trust bundle; opened status lists are kept per issuer."""

    def __init__(self, trust: TrustBundle, clock: Callable[[], int] | None = None) -> None:
        self.trust = trust
        self._clock = clock or (lambda: int(time.time()))
        self._statements: dict[str, statuslist.StatusStatement | _Refused] = {}

    def statement(self, issuer: IssuerTrust) -> statuslist.StatusStatement:
        cached = self._statements.get(issuer.node_id)
        if cached is None:
            if not issuer.status_list:
                cached = _Refused(
                    "status_unavailable", f"no status list of {issuer.node_id} is cached", "unknown"
                )
            else:
                try:
                    cached = statuslist.open_statement(issuer.status_list, issuer.node_id, issuer.keys)
                except statuslist.StatusListError as error:
                    cached = _Refused(error.code, str(error))
            self._statements[issuer.node_id] = cached
        if isinstance(cached, _Refused):
            raise cached
        return cached

    def _check_status(self, token: sdjwt.Token, issuer: IssuerTrust, now: int) -> str:
        statement = self.statement(issuer)
        reference = token.payload["status"]["status_list"]
        if reference["uri"] != statement.uri:
            raise _Refused("status_list_mismatch", f"the certificate names status list {reference['uri']!r}")
        index = reference["idx"]
        if not 0 <= index < statement.size:
            raise _Refused("status_index_invalid", f"status index {index} is outside the list")
        as_of = _iso(statement.issued_at)
        if statement.stale(now):
            raise _Refused(
                "status_stale",
                f"status unknown as of {as_of}: the cached list is older than its time-to-live "
                f"({statement.ttl}s); refresh the trust data",
                "unknown",
            )
        value = statement.status(index)
        if value == statuslist.REVOKED:
            raise _Refused("revoked", f"revoked (status list of {as_of})")
        if value == statuslist.SUSPENDED:
            raise _Refused("suspended", f"suspended (status list of {as_of})")
        if value != statuslist.VALID:
            raise _Refused("status_value_invalid", f"status value {value}")
        return f"valid as of {as_of}"

    def verify(self, text: str) -> Verdict:
        now = self._clock()
        checks: list[Check] = []
        token: sdjwt.Token | None = None
        name = "format"
        try:
            token, detail = _check_format(text)
            checks.append(Check(name, "pass", "ok", detail))
            name = "issuer"
            issuer, public_key, detail = _check_issuer(token, self.trust)
            checks.append(Check(name, "pass", "ok", detail))
            name = "integrity"
            checks.append(Check(name, "pass", "ok", _check_integrity(token, public_key)))
            name = "validity"
            checks.append(Check(name, "pass", "ok", _check_validity(token, now)))
            name = "status"
            checks.append(Check(name, "pass", "ok", self._check_status(token, issuer, now)))
        except _Refused as refused:
            checks.append(Check(name, refused.result, refused.code, refused.detail))
            checks += [
                Check(n, "skipped", "skipped", "an earlier check failed") for n in CHECKS[len(checks) :]
            ]
            if len(checks) > 2 and checks[2].result != "pass":
                token = None  # claims that did not pass integrity are not shown as facts
        return Verdict(checks, token)
