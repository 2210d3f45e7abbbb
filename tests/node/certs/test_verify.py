"""The verifier: each check with its own result and reason code, valid only when all pass."""

from __future__ import annotations

import time
from collections.abc import Callable

from node.certs import sdjwt, statuslist
from node.certs.trust import TrustBundle
from node.certs.verify import CHECKS, REASONS, Verifier
from tests.node.certs.conftest import Issuer, bundle


def verify(token: str, trust: TrustBundle, now: int | None = None) -> tuple[bool, str, dict[str, str]]:
    verdict = Verifier(trust, clock=lambda: int(time.time()) if now is None else now).verify(token)
    assert [c.name for c in verdict.checks] == list(CHECKS)
    assert all(c.code in REASONS for c in verdict.checks)
    return verdict.valid, verdict.code, {c.name: c.result for c in verdict.checks}


def test_a_fresh_certificate_passes_every_check(huoqiu: Issuer) -> None:
    token = huoqiu.token()
    verdict = Verifier(bundle(huoqiu.trust()), clock=lambda: huoqiu.now).verify(token)
    assert verdict.valid
    assert [c.result for c in verdict.checks] == ["pass"] * 5
    assert verdict.fields["applicant_name"] == "陈添荣"
    assert verdict.claims["iss"] == "cn-341522"


def test_a_holder_may_disclose_fewer_fields_without_a_new_signature(huoqiu: Issuer) -> None:
    token = sdjwt.parse(huoqiu.token())
    shown = token.present({"applicant_name", "account_balance"})
    verdict = Verifier(bundle(huoqiu.trust()), clock=lambda: huoqiu.now).verify(shown)
    assert verdict.valid
    assert set(verdict.fields) == {"applicant_name", "account_balance"}


def test_revoked_and_suspended_certificates_are_refused_with_their_own_codes(huoqiu: Issuer) -> None:
    revoked, suspended = huoqiu.token(index=7), huoqiu.token(index=8)
    trust = bundle(huoqiu.trust(huoqiu.status_list(entries={7: statuslist.REVOKED, 8: statuslist.SUSPENDED})))
    assert verify(revoked, trust)[:2] == (False, "revoked")
    assert verify(suspended, trust)[:2] == (False, "suspended")
    assert verify(huoqiu.token(index=9), trust)[0]


def test_an_old_status_list_means_status_unknown_never_valid(huoqiu: Issuer) -> None:
    token = huoqiu.token()
    trust = bundle(huoqiu.trust(huoqiu.status_list(iat=huoqiu.now, ttl=3600)))
    assert verify(token, trust, now=huoqiu.now + 3000)[0]
    valid, code, results = verify(token, trust, now=huoqiu.now + 3601)
    assert not valid
    assert code == "status_stale"
    assert results["status"] == "unknown"
    detail = Verifier(trust, clock=lambda: huoqiu.now + 3601).verify(token).checks[-1].detail
    assert detail.startswith("status unknown as of ")


def test_a_status_list_signed_by_another_node_is_not_trusted(
    huoqiu: Issuer, make_issuer: Callable[[str], Issuer]
) -> None:
    wujiang = make_issuer("cn-320509")
    forged = statuslist.sign(
        wujiang.identity.signer.seed, wujiang.identity.signer.key_id, "cn-341522", {}, huoqiu.now, 3600
    )
    assert verify(huoqiu.token(), bundle(huoqiu.trust(forged)))[1] == "status_list_invalid"
    own = wujiang.status_list()
    assert verify(huoqiu.token(), bundle(huoqiu.trust(own)))[1] == "status_list_invalid"


def test_no_status_list_cached_is_unknown(huoqiu: Issuer) -> None:
    valid, code, results = verify(huoqiu.token(), bundle(huoqiu.trust("")))
    assert (valid, code, results["status"]) == (False, "status_unavailable", "unknown")


def test_validity_dates(huoqiu: Issuer) -> None:
    trust = bundle(huoqiu.trust(huoqiu.status_list(ttl=10 * 86400)))
    token = huoqiu.token(iat=huoqiu.now, days=1)
    assert verify(token, trust, now=huoqiu.now + 86399)[0]
    assert verify(token, trust, now=huoqiu.now + 86400)[1] == "expired"
    assert verify(huoqiu.token(iat=huoqiu.now + 3600), trust, now=huoqiu.now)[1] == "not_yet_valid"


def test_an_issuer_not_allowed_for_the_type_is_refused(huoqiu: Issuer) -> None:
    token = huoqiu.token(vct="no-criminal-record-proof")
    assert verify(token, bundle(huoqiu.trust()))[1] == "type_not_allowed"
    assert verify(huoqiu.token(), bundle(huoqiu.trust(types=frozenset())))[1] == "type_not_allowed"


def test_an_unknown_issuer_is_refused(huoqiu: Issuer, make_issuer: Callable[[str], Issuer]) -> None:
    stranger = make_issuer("cn-110105")
    assert verify(stranger.token(), bundle(huoqiu.trust()))[1] == "issuer_unknown"


def test_certificates_issued_before_a_key_rotation_still_verify(huoqiu: Issuer) -> None:
    before = huoqiu.token()
    old_seed, old_kid = huoqiu.identity.signer.seed, huoqiu.identity.signer.key_id
    huoqiu.rotate()
    after = huoqiu.token(iat=huoqiu.now)
    trust = bundle(huoqiu.trust())
    assert verify(before, trust)[0]
    assert verify(after, trust)[0]
    # The retired key cannot vouch for a certificate that claims to be issued after its window.
    forged = huoqiu.token(iat=huoqiu.now + 3600, seed=old_seed, kid=old_kid)
    assert verify(forged, trust, now=huoqiu.now + 7200)[1] == "key_not_valid"
