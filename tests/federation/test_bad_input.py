"""Bad input on the federation port: each gets a clear gRPC status, and the node keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text as sql

from federation import FederationSettings
from federation.client import PeerClient, RpcFailure
from federation.clock import now_us
from federation.envelope import seal, seal_many
from federation.keys import Signer
from federation.outbox import new_message_id
from federation.tls import create_node_tls
from federation.units import BatchProof, Envelope
from federation.wire import ping_payload, signed_envelope_bytes
from tests.utils import FedNode, eventually, peer

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def trio(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Huoqiu (receiver, 256 KiB message limit) peered with Wujiang and Lu'an."""
    huoqiu = await FedNode(
        tmp_path / "huoqiu", "cn-341522", settings=FederationSettings(max_message_bytes=256 * 1024)
    ).start()
    wujiang = await FedNode(tmp_path / "wujiang", "cn-320509").start()
    luan = await FedNode(tmp_path / "luan", "cn-341500").start()
    await peer(huoqiu, wujiang)
    await peer(huoqiu, luan)
    yield huoqiu, wujiang, luan
    for node in (huoqiu, wujiang, luan):
        await node.stop()


def envelope(sender: str, recipient: str, **changes: object) -> Envelope:
    base = Envelope(
        message_id=new_message_id(),
        sender=sender,
        recipient=recipient,
        kind="ping",
        created_at_us=now_us(),
        payload=ping_payload("bad input"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def deliver(node: FedNode, to: str, wire: bytes) -> tuple[int, str]:
    """(error code, message) of one unary delivery; (0, '') when it was receipted."""
    try:
        results = await node.federation.client(to).deliver([wire], unary=True, timeout=10)
    except RpcFailure as failure:
        return failure.code.value[0], failure.details
    return results[0].error_code, results[0].error_message


async def still_serves(receiver: FedNode, sender: FedNode) -> None:
    [message] = await sender.federation.ping(receiver.node_id, 1)
    code, text = await deliver(sender, receiver.node_id, message.wire)
    assert code == 0, f"a good ping was refused after bad input: {text}"


async def test_unknown_tls_client_is_refused(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    stranger = PeerClient(
        create_node_tls("cn-110105"),
        "cn-341522",
        huoqiu.federation.endpoint,
        huoqiu.federation.identity.tls.cert_der,
    )
    try:
        with pytest.raises(RpcFailure) as refused:
            await stranger.deliver([b"\x00"], unary=True, timeout=5)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert "TLS certificate" in refused.value.details
    finally:
        await stranger.close()
    await still_serves(huoqiu, wujiang)


async def test_forged_signature_of_a_known_peer_is_unauthenticated(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    sealed = seal(envelope("cn-320509", "cn-341522"), Signer.generate())
    forged = signed_envelope_bytes(
        sealed.envelope_bytes, sealed.signature, wujiang.federation.identity.signer.key_id
    )
    code, text = await deliver(wujiang, "cn-341522", forged)
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "does not verify" in text
    await still_serves(huoqiu, wujiang)


async def test_a_batch_envelope_with_a_bent_proof_is_unauthenticated(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    signer = wujiang.federation.identity.signer
    first, second, third, _ = seal_many([envelope("cn-320509", "cn-341522") for _ in range(4)], signer)
    assert first.batch is not None
    assert second.batch is not None
    # A genuine one goes first, so that the batch signature is known good when the others arrive.
    assert await deliver(wujiang, "cn-341522", first.wire) == (0, "")

    def rewrapped(envelope_bytes: bytes, proof: BatchProof) -> bytes:
        return signed_envelope_bytes(envelope_bytes, second.signature, second.key_id, proof)

    proof = second.batch
    assert proof is not None
    bent_hash = (bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:], *proof.path[1:])
    forgeries = {
        "a bent sibling hash": rewrapped(second.envelope_bytes, dataclasses.replace(proof, path=bent_hash)),
        "another position": rewrapped(second.envelope_bytes, dataclasses.replace(proof, index=2)),
        "another batch size": rewrapped(second.envelope_bytes, dataclasses.replace(proof, size=3)),
        "an envelope from outside the batch": rewrapped(
            seal(envelope("cn-320509", "cn-341522"), signer).envelope_bytes, proof
        ),
    }
    for what, forged in forgeries.items():
        code, text = await deliver(wujiang, "cn-341522", forged)
        assert code == grpc.StatusCode.UNAUTHENTICATED.value[0], what
        assert "does not verify" in text, what
    short = rewrapped(second.envelope_bytes, dataclasses.replace(proof, path=proof.path[:-1]))
    code, text = await deliver(wujiang, "cn-341522", short)
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "batch proof" in text
    assert "shorter" in text
    code, text = await deliver(wujiang, "cn-341522", rewrapped(second.envelope_bytes, BatchProof(0, 1, ())))
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "at least 2" in text
    assert await deliver(wujiang, "cn-341522", third.wire) == (0, "")
    await still_serves(huoqiu, wujiang)


async def test_a_bent_batch_mate_in_one_call_is_refused_alone(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    batch = seal_many(
        [envelope("cn-320509", "cn-341522") for _ in range(6)], wujiang.federation.identity.signer
    )
    bent = batch[3]
    assert bent.batch is not None
    path = (bent.batch.path[0][:-1] + bytes([bent.batch.path[0][-1] ^ 1]), *bent.batch.path[1:])
    forged = signed_envelope_bytes(
        bent.envelope_bytes, bent.signature, bent.key_id, dataclasses.replace(bent.batch, path=path)
    )
    # The whole batch in one call, the forgery among its genuine mates (after the first of them,
    # whose signature is checked in full and is good).
    wires = [item.wire for item in batch[:3]] + [forged] + [item.wire for item in batch[4:]]
    results = await wujiang.federation.client("cn-341522").deliver(wires, unary=False, timeout=10)
    assert [r.ok for r in results] == [True, True, True, False, True, True]
    assert results[3].error_code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "does not verify" in results[3].error_message
    await still_serves(huoqiu, wujiang)


async def test_bad_calls_among_good_ones_at_once_are_each_refused_alone(trio) -> None:  # type: ignore[no-untyped-def]
    """Calls that arrive together are checked and recorded together (one transaction): each
    bad one gets its own error, every good one its receipt, from both peers."""
    huoqiu, wujiang, luan = trio
    signer = wujiang.federation.identity.signer
    good = [seal(envelope("cn-320509", "cn-341522"), signer) for _ in range(12)]
    from_luan = [seal(envelope("cn-341500", "cn-341522"), luan.federation.identity.signer) for _ in range(4)]
    impostor = seal(envelope("cn-320509", "cn-341522"), Signer.generate())
    bad = {
        "forged": signed_envelope_bytes(impostor.envelope_bytes, impostor.signature, signer.key_id),
        "unknown key": signed_envelope_bytes(impostor.envelope_bytes, impostor.signature, "k-never-made"),
        "elsewhere": seal(envelope("cn-320509", "cn-341500"), signer).wire,
        "garbage": b"\x0a\x05abc",
    }
    answers = await asyncio.gather(
        *[deliver(wujiang, "cn-341522", item.wire) for item in good],
        *[deliver(wujiang, "cn-341522", wire) for wire in bad.values()],
        *[deliver(luan, "cn-341522", item.wire) for item in from_luan],
    )
    assert answers[: len(good)] == [(0, "")] * len(good)
    assert answers[len(good) + len(bad) :] == [(0, "")] * len(from_luan)
    refused = dict(zip(bad, answers[len(good) : len(good) + len(bad)], strict=True))
    assert refused["forged"][0] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "does not verify" in refused["forged"][1]
    assert refused["unknown key"][0] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "k-never-made is not a signing key of cn-320509" in refused["unknown key"][1]
    assert refused["elsewhere"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "addressed to cn-341500" in refused["elsewhere"][1]
    assert refused["garbage"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0]

    def received(session: Any) -> set[str]:
        return set(session.execute(sql("SELECT message_id FROM inbox")).scalars())

    expected = {item.envelope.message_id for item in good + from_luan}
    assert await huoqiu.db.read(received) == expected
    await still_serves(huoqiu, wujiang)


async def test_envelope_addressed_to_another_node_is_refused(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    sealed = seal(envelope("cn-320509", "cn-341500"), wujiang.federation.identity.signer)
    code, text = await deliver(wujiang, "cn-341522", sealed.wire)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "addressed to cn-341500" in text
    assert "this node is cn-341522" in text
    await still_serves(huoqiu, wujiang)


async def test_envelope_replayed_by_a_different_peer_is_unauthenticated(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, luan = trio
    [message] = await wujiang.federation.ping("cn-341522", 1)
    code, text = await deliver(luan, "cn-341522", message.wire)
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "arrived over the connection of cn-341500" in text
    await still_serves(huoqiu, luan)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff\xfe\xfd garbage", b"\x0a\x05abc", b"\x0a\x80\x80\x80\x80\x80\x80"],
    ids=["empty", "garbage", "truncated", "bad-varint"],
)
async def test_garbage_bytes_are_invalid_argument(trio, garbage: bytes) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    code, text = await deliver(wujiang, "cn-341522", garbage)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "signed envelope" in text
    await still_serves(huoqiu, wujiang)


async def test_truncated_envelope_is_invalid_argument(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    [message] = await wujiang.federation.ping("cn-341522", 1)
    code, _ = await deliver(wujiang, "cn-341522", message.wire[: len(message.wire) // 2])
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    await still_serves(huoqiu, wujiang)


async def test_oversized_message_is_resource_exhausted(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    big = seal(
        envelope("cn-320509", "cn-341522", payload=ping_payload("big", bytes(300 * 1024))),
        wujiang.federation.identity.signer,
    )
    code, text = await deliver(wujiang, "cn-341522", big.wire)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], text
    await still_serves(huoqiu, wujiang)


async def test_unknown_envelope_version_is_refused_with_the_version_spoken(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    future = seal(envelope("cn-320509", "cn-341522", version=7), wujiang.federation.identity.signer)
    code, text = await deliver(wujiang, "cn-341522", future.wire)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "version 7" in text
    assert "speaks 1" in text
    await still_serves(huoqiu, wujiang)


async def test_unknown_kind_is_unimplemented_and_not_recorded(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, _ = trio
    odd = seal(envelope("cn-320509", "cn-341522", kind="case.teleport"), wujiang.federation.identity.signer)
    code, text = await deliver(wujiang, "cn-341522", odd.wire)
    assert code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "case.teleport" in text
    # Once the receiver learns the kind, the same message goes through: it was never recorded.
    huoqiu.federation.handlers.register("case.teleport", lambda tx, e: None)
    code, _ = await deliver(wujiang, "cn-341522", odd.wire)
    assert code == 0


async def test_removed_peer_is_refused_at_once(trio) -> None:  # type: ignore[no-untyped-def]
    huoqiu, wujiang, luan = trio
    await still_serves(huoqiu, wujiang)  # an open connection exists now
    await huoqiu.federation.remove_peer("cn-320509")
    [message] = await wujiang.federation.ping("cn-341522", 1)
    code, text = await deliver(wujiang, "cn-341522", message.wire)
    assert code in (grpc.StatusCode.UNAUTHENTICATED.value[0], grpc.StatusCode.UNAVAILABLE.value[0]), text
    await still_serves(huoqiu, luan)
    await eventually(lambda: _is_removed(huoqiu), what="the removal to stick")


async def _is_removed(node: FedNode) -> bool:
    peer_record = node.federation.peers.get("cn-320509")
    return peer_record is not None and not peer_record.active
