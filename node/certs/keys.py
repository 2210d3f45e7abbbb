"""Which of an issuer's keys signed something: by key ID, inside the key's validity window.

Issuer keys are the federation's own node keys (`federation.keys.KeyHistory`, learned from peers
at peering and at every hello): key *i* was in use from its `valid_from` until the next key's.
A certificate or status list names its key (`kid`) and says when it was made (`iat`); the key
must be one of the issuer's and must have been in use then, give or take the federation's clock
skew. That is what keeps certificates issued before a key rotation valid after it, and what
refuses a certificate "issued" today with a key the issuer retired last year.
"""

from __future__ import annotations

from federation.keys import CLOCK_SKEW_US, KeyHistory, PublicKey


class KeyProblem(Exception):
    """The key cannot vouch for the document; `code` is the verifier's reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def key_at(history: KeyHistory, kid: str, at_seconds: int) -> PublicKey:
    """The key `kid` of the history's node, if it was in use at `at_seconds`."""
    key = history.find(kid)
    if key is None:
        raise KeyProblem("key_unknown", f"key {kid} is not a signing key of {history.node_id}")
    start, until = history.window(kid)
    at_us = at_seconds * 1_000_000
    if at_us + CLOCK_SKEW_US < start or (until is not None and at_us >= until + CLOCK_SKEW_US):
        raise KeyProblem(
            "key_not_valid", f"key {kid} of {history.node_id} was not in use at the time the document claims"
        )
    return key
