"""Signing keys: contexts, windows, endorsement chains and rotation between live peers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from federation.envelope import open_envelope, verify_envelope
from federation.identity import NodeIdentity
from federation.keys import CONTEXT_ENVELOPE, CONTEXT_RECEIPT, KeyHistory, PublicKey, SignatureError, Signer
from federation.models import LOG, OUTBOX
from federation.wire import decode_log_record
from tests.utils import FedNode, eventually, peer


def test_a_signature_holds_only_in_its_own_context() -> None:
    signer = Signer.generate()
    signature = signer.sign(CONTEXT_ENVELOPE, b"bytes")
    key = PublicKey(signer.key_id, signer.public_key, 0)
    assert key.verify(CONTEXT_ENVELOPE, b"bytes", signature)
    assert not key.verify(CONTEXT_RECEIPT, b"bytes", signature)
    assert not key.verify(CONTEXT_ENVELOPE, b"byte5", signature)


def test_rotation_keeps_old_keys_with_their_windows(tmp_path: Path) -> None:
    identity = NodeIdentity.create(tmp_path / "keys", "cn-320509", "吴江")
    first = identity.signer
    rotated = identity.rotate().rotate()
    assert rotated.keys.keys[0].key_id == first.key_id
    assert len(rotated.keys.keys) == 3
    start, until = rotated.keys.window(first.key_id)
    assert until == rotated.keys.keys[1].valid_from_us
    assert start < until
    rotated.keys.validate()
    reloaded = NodeIdentity.load(tmp_path / "keys", "cn-320509", "吴江")
    assert reloaded.signer.key_id == rotated.signer.key_id
    assert not (tmp_path / "keys" / f"signing-{first.key_id}.key").exists(), (
        "retired private keys are deleted"
    )
    old_signature = first.sign(CONTEXT_ENVELOPE, b"old")
    reloaded.keys.verify(CONTEXT_ENVELOPE, b"old", old_signature, first.key_id, start + 1)
    with pytest.raises(SignatureError, match="not in use"):
        reloaded.keys.verify(CONTEXT_ENVELOPE, b"old", old_signature, first.key_id, until + 3600 * 1_000_000)


def test_a_key_not_endorsed_by_its_predecessor_is_refused(tmp_path: Path) -> None:
    identity = NodeIdentity.create(tmp_path / "keys", "cn-320509", "吴江").rotate()
    stranger = Signer.generate()
    last = identity.keys.keys[-1]
    forged = replace(
        last, endorsement_signature=stranger.sign(b"tongban.v1.KeyEndorsement\n", last.endorsement_bytes)
    )
    broken = KeyHistory(identity.node_id, (*identity.keys.keys[:-1], forged))
    with pytest.raises(SignatureError, match="not endorsed"):
        broken.validate()


def test_a_history_that_drops_keys_is_not_an_update(tmp_path: Path) -> None:
    identity = NodeIdentity.create(tmp_path / "keys", "cn-320509", "吴江")
    rotated = identity.rotate()
    assert identity.keys.accepts_update(rotated.keys)
    assert not rotated.keys.accepts_update(identity.keys)
    other = NodeIdentity.create(tmp_path / "other", "cn-320509", "吴江")
    assert not identity.keys.accepts_update(other.keys)


@pytest.mark.asyncio
async def test_peers_learn_a_rotated_key_and_old_messages_still_verify(tmp_path: Path) -> None:
    wujiang = await FedNode(tmp_path / "a", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        await wujiang.federation.ping("cn-341522", 5)
        previous, current, _, told, missed = await wujiang.federation.rotate_keys()
        assert told == ["cn-341522"]
        assert missed == []
        assert huoqiu.federation.peers.require("cn-320509").keys.current.key_id == current
        await wujiang.federation.ping("cn-341522", 5)

        async def all_delivered() -> bool:
            states = await wujiang.db.read(lambda s: s.execute(select(OUTBOX.c.state)).scalars().all())
            return len(states) == 10 and set(states) == {"delivered"}

        await eventually(all_delivered, what="10 pings across the rotation")
        history = huoqiu.federation.peers.require("cn-320509").keys
        records = await huoqiu.db.read(
            lambda s: (
                s.execute(select(LOG.c.record).where(LOG.c.direction == "in", LOG.c.entry_type == "envelope"))
                .scalars()
                .all()
            )
        )
        key_ids = set()
        for record in records:
            sealed = open_envelope(decode_log_record(record).body)
            verify_envelope(sealed, history)  # raises when it does not hold
            key_ids.add(sealed.key_id)
        assert key_ids == {previous, current}
    finally:
        await wujiang.stop()
        await huoqiu.stop()


@pytest.mark.asyncio
async def test_a_peer_that_missed_the_rotation_learns_the_key_on_first_message(tmp_path: Path) -> None:
    wujiang = await FedNode(tmp_path / "a", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        await huoqiu.stop()
        _, current, _, told, missed = await wujiang.federation.rotate_keys()
        assert missed == ["cn-341522"]
        assert told == []
        await huoqiu.start()
        await wujiang.federation.ping("cn-341522", 3)

        async def delivered() -> bool:
            states = await wujiang.db.read(lambda s: s.execute(select(OUTBOX.c.state)).scalars().all())
            return states == ["delivered"] * 3

        await eventually(delivered, what="pings signed with a key the peer learns on the way")
        assert huoqiu.federation.peers.require("cn-320509").keys.current.key_id == current
    finally:
        await wujiang.stop()
        await huoqiu.stop()
