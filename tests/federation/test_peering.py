"""Peering by join token: what each side pins, and every way a token can be wrong."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from federation import FederationError
from federation.wire import decode_token, encode_token
from tests.utils import FedNode, eventually

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    wujiang = await FedNode(tmp_path / "a", "cn-320509", name="吴江区政务服务中心").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522", name="霍邱县政务服务中心").start()
    yield wujiang, huoqiu
    await wujiang.stop()
    await huoqiu.stop()


async def test_both_sides_pin_each_others_fingerprints_and_keys(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    pinned = await huoqiu.federation.peering.join(token)
    assert pinned.node_id == "cn-320509"
    assert pinned.name == "吴江区政务服务中心"
    assert pinned.tls_fingerprint == wujiang.federation.identity.tls.fingerprint
    assert pinned.keys.current.key_id == wujiang.federation.identity.signer.key_id

    async def known() -> bool:
        return wujiang.federation.peers.get("cn-341522") is not None

    await eventually(known)
    other = wujiang.federation.peers.get("cn-341522")
    assert other is not None
    assert other.tls_fingerprint == huoqiu.federation.identity.tls.fingerprint
    assert other.keys.current.key_id == huoqiu.federation.identity.signer.key_id
    assert other.endpoint == huoqiu.federation.endpoint


async def test_a_token_works_once(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    await huoqiu.federation.peering.join(token)
    third = await FedNode(tmp_path / "c", "cn-341500").start()
    try:
        with pytest.raises(FederationError) as refused:
            await third.federation.peering.join(token)
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "already used by cn-341522" in refused.value.message
        assert third.federation.peers.get("cn-320509") is None
    finally:
        await third.stop()


async def test_an_expired_token_is_refused_before_any_connection(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    stale = encode_token(dataclasses.replace(decode_token(token), expires_at_us=1_000_000))
    with pytest.raises(FederationError) as refused:
        await huoqiu.federation.peering.join(stale)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "expired" in refused.value.message


async def test_a_token_whose_expiry_was_extended_by_hand_is_still_refused(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    invite, token = await wujiang.federation.peering.invite(600)
    # The inviter keeps its own expiry: editing the token does not move it.
    await wujiang.db.write(
        lambda tx: tx.session.execute(
            text("UPDATE invites SET expires_at_us = 1 WHERE invite_id = :i"), {"i": invite.invite_id}
        )
    )
    with pytest.raises(FederationError) as refused:
        await huoqiu.federation.peering.join(token)
    assert "expired" in refused.value.message


async def test_a_forged_secret_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    forged = encode_token(dataclasses.replace(decode_token(token), secret=bytes(32)))
    with pytest.raises(FederationError) as refused:
        await huoqiu.federation.peering.join(forged)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "forged" in refused.value.message
    assert wujiang.federation.peers.get("cn-341522") is None


async def test_a_token_pinning_another_certificate_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    wrong = encode_token(dataclasses.replace(decode_token(token), tls_fingerprint="ab" * 32))
    with pytest.raises(FederationError) as refused:
        await huoqiu.federation.peering.join(wrong)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "token pins" in refused.value.message


@pytest.mark.parametrize("mangle", ["truncate", "prefix", "base64"])
async def test_a_damaged_token_says_to_copy_it_again(pair, mangle: str) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    _, token = await wujiang.federation.peering.invite(600)
    damaged = {
        "truncate": token[: len(token) // 2],
        "prefix": "xyz." + token[5:],
        "base64": token[:20] + "!!!" + token[23:],
    }[mangle]
    with pytest.raises(FederationError) as refused:
        await huoqiu.federation.peering.join(damaged)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "token" in refused.value.message


async def test_a_node_cannot_join_its_own_token(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, _ = pair
    _, token = await wujiang.federation.peering.invite(600)
    with pytest.raises(FederationError) as refused:
        await wujiang.federation.peering.join(token)
    assert "itself" in refused.value.message


async def test_token_carries_what_design_says(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, _ = pair
    _, text = await wujiang.federation.peering.invite(3600)
    token = decode_token(text)
    assert token.node_id == "cn-320509"
    assert token.endpoint == wujiang.federation.endpoint
    assert token.signing_key == wujiang.federation.identity.signer.public_key
    assert token.tls_fingerprint == wujiang.federation.identity.tls.fingerprint
    assert len(token.secret) == 32
    assert len(text) < 260, "a token should fit in a chat message"
    assert base64.urlsafe_b64decode(text[5:] + "=" * (-len(text[5:]) % 4))
