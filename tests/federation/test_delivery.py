"""Delivery between two in-process nodes over real mutual TLS: receipts, dedupe, order, parking."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from federation import Rejected, SealedEnvelope, Tx
from federation.envelope import open_envelope, open_receipt, verify_envelope
from federation.models import INBOX, LOG, OUTBOX
from federation.outbox import Draft
from federation.wire import ping_payload
from tests.utils import FedNode, eventually, peer

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    wujiang = await FedNode(tmp_path / "a", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    await peer(wujiang, huoqiu)
    yield wujiang, huoqiu
    await wujiang.stop()
    await huoqiu.stop()


async def count(node: FedNode, statement) -> int:  # type: ignore[no-untyped-def]
    return int(await node.db.read(lambda s: s.execute(statement).scalar_one()))


async def delivered(node: FedNode, peer_id: str) -> int:
    return await count(
        node,
        select(func.count())
        .select_from(OUTBOX)
        .where(OUTBOX.c.peer == peer_id, OUTBOX.c.state == "delivered"),
    )


async def test_pings_are_receipted_and_logged_on_both_sides(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    sent = await wujiang.federation.ping("cn-341522", 50)
    await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 50), what="50 receipts")
    ids = [m.message_id for m in sent]
    received = await count(huoqiu, select(func.count()).select_from(INBOX).where(INBOX.c.message_id.in_(ids)))
    assert received == 50
    for node, direction in ((wujiang, "out"), (huoqiu, "in")):
        logged = await count(
            node,
            select(func.count(func.distinct(LOG.c.message_id))).where(
                LOG.c.message_id.in_(ids), LOG.c.direction == direction, LOG.c.entry_type == "envelope"
            ),
        )
        assert logged == 50, f"{node.node_id} logged {logged} of 50 envelopes {direction}"


async def _equals(value, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await value) == expected


async def test_duplicate_envelope_gets_identical_receipt(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    [message] = await wujiang.federation.ping("cn-341522", 1)
    await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 1))
    client = wujiang.federation.client("cn-341522")
    first = await client.deliver([message.wire], unary=True, timeout=10)
    second = await client.deliver([message.wire], unary=False, timeout=10)
    assert first[0].receipt is not None
    assert second[0].receipt is not None
    assert first[0].receipt.wire == second[0].receipt.wire
    assert second[0].duplicate, "the receiver says it had the message already"
    assert open_receipt(first[0].receipt.wire).receipt.ack_for(message.message_id) is not None
    inbox_rows = await count(
        huoqiu, select(func.count()).select_from(INBOX).where(INBOX.c.message_id == message.message_id)
    )
    assert inbox_rows == 1


async def test_messages_of_one_case_arrive_in_order(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    seen: list[tuple[str, int]] = []
    huoqiu.federation.handlers.register(
        "test.step", lambda tx, envelope: seen.append((envelope.envelope.case_id, envelope.envelope.case_seq))
    )
    wujiang.federation.handlers.register("test.step", lambda tx, envelope: None)

    def queue(tx: Tx) -> None:
        for step in range(20):
            for case in ("320509-20261122-000001", "320509-20261122-000002"):
                wujiang.federation.enqueue(
                    tx, to="cn-341522", kind="test.step", payload=ping_payload(str(step)), case_id=case
                )

    await wujiang.db.write(queue)
    await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 40), what="40 receipts")
    for case in ("320509-20261122-000001", "320509-20261122-000002"):
        assert [seq for c, seq in seen if c == case] == list(range(1, 21))


async def test_refused_message_gets_rejected_receipt_and_no_change(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, huoqiu = pair
    outcomes = []

    def refuse(tx: Tx, envelope: SealedEnvelope) -> None:
        raise Rejected("cn-320509 may not send cases for item 0000")

    huoqiu.federation.handlers.register("test.refused", refuse)
    wujiang.federation.handlers.register(
        "test.refused", lambda tx, e: None, on_receipt=lambda tx, d: outcomes.append(d.ack)
    )
    await wujiang.db.write(
        lambda tx: wujiang.federation.enqueue(tx, to="cn-341522", kind="test.refused", payload=ping_payload())
    )
    await eventually(lambda: _truthy(outcomes), what="the rejected receipt")
    assert outcomes[0].outcome == "rejected"
    assert "may not send cases" in outcomes[0].reason


async def _truthy(value: list) -> bool:  # type: ignore[type-arg]
    return bool(value)


async def test_a_stuck_case_does_not_hold_up_other_messages(tmp_path: Path) -> None:
    from federation import FederationSettings, SenderSettings

    settings = FederationSettings(sender=SenderSettings(backoff_base=0.01, backoff_cap=0.05, park_after=3))
    wujiang = await FedNode(tmp_path / "a", "cn-320509", settings=settings).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)

        def explode(tx: Tx, envelope: SealedEnvelope) -> None:
            raise RuntimeError("a bug in the receiving domain")

        huoqiu.federation.handlers.register("test.broken", explode)
        huoqiu.federation.handlers.register("test.fine", lambda tx, e: None)
        stuck_case = "320509-20261122-000009"

        def queue(tx: Tx) -> None:
            enqueue = wujiang.federation.enqueue
            enqueue(tx, to="cn-341522", kind="test.broken", payload=ping_payload(), case_id=stuck_case)
            enqueue(tx, to="cn-341522", kind="test.fine", payload=ping_payload(), case_id=stuck_case)
            enqueue(
                tx, to="cn-341522", kind="test.fine", payload=ping_payload(), case_id="320509-20261122-000010"
            )
            enqueue(tx, to="cn-341522", kind="test.fine", payload=ping_payload())

        await wujiang.db.write(queue)
        parked = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.state == "parked")
        await eventually(lambda: _equals(count(wujiang, parked), 1), what="the broken message to be parked")
        await eventually(
            lambda: _equals(delivered(wujiang, "cn-341522"), 2), what="the other case and the ping"
        )
        behind = select(OUTBOX.c.state).where(OUTBOX.c.case_id == stuck_case, OUTBOX.c.case_seq == 2)
        assert await wujiang.db.read(lambda s: s.execute(behind).scalar_one()) == "pending"
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def test_one_call_per_message_keeps_its_limit_and_every_order(tmp_path: Path) -> None:
    """Unary delivery with many calls in flight: an answered call hands its slot straight on, yet
    never more calls than allowed are out, each message arrives once, and each case in order."""
    from federation import FederationSettings, SenderSettings

    limit = 8
    settings = FederationSettings(
        sender=SenderSettings(unary=True, max_in_flight=limit, backoff_base=0.05, backoff_cap=0.5)
    )
    wujiang = await FedNode(tmp_path / "a", "cn-320509", settings=settings).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        inbox = huoqiu.federation.inbox
        receive = inbox.receive
        calls = {"now": 0, "peak": 0, "widest": 0}

        async def counted(peer_, wires):  # type: ignore[no-untyped-def]
            calls["now"] += 1
            calls["peak"] = max(calls["peak"], calls["now"])
            calls["widest"] = max(calls["widest"], len(wires))
            try:
                return await receive(peer_, wires)
            finally:
                calls["now"] -= 1

        inbox.receive = counted  # type: ignore[method-assign]
        seen: list[tuple[str, int]] = []
        huoqiu.federation.handlers.register(
            "test.step", lambda tx, e: seen.append((e.envelope.case_id, e.envelope.case_seq))
        )
        wujiang.federation.handlers.register("test.step", lambda tx, e: None)
        cases = [f"320509-20261203-00000{n}" for n in range(1, 4)]

        def queue(tx: Tx) -> None:
            for step in range(30):
                for case in cases:
                    wujiang.federation.enqueue(
                        tx, to="cn-341522", kind="test.step", payload=ping_payload(str(step)), case_id=case
                    )

        await wujiang.db.write(queue)
        await wujiang.federation.ping("cn-341522", 150)
        await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 240), what="240 receipts")
        assert await count(huoqiu, select(func.count()).select_from(INBOX)) == 240
        for case in cases:
            assert [seq for c, seq in seen if c == case] == list(range(1, 31)), case
        assert calls["widest"] == 1, "one envelope per call"
        assert 2 <= calls["peak"] <= limit, f"{calls['peak']} calls at once with a limit of {limit}"
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def test_one_call_per_message_survives_the_receiver_going_away(tmp_path: Path) -> None:
    """Calls that hand their slots on keep working through a receiver that stops mid-stream and
    comes back on its port: every message lands once, none is parked, nothing is left behind."""
    from federation import FederationSettings, SenderSettings

    settings = FederationSettings(
        sender=SenderSettings(unary=True, max_in_flight=16, backoff_base=0.05, backoff_cap=0.3)
    )
    wujiang = await FedNode(tmp_path / "a", "cn-320509", settings=settings).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        total = 3000
        await wujiang.federation.ping("cn-341522", total)
        await eventually(lambda: _at_least(delivered(wujiang, "cn-341522"), 50), what="the first receipts")
        await huoqiu.stop()
        before = await delivered(wujiang, "cn-341522")
        assert before < total, "the receiver went away only after everything had arrived"
        huoqiu = await FedNode(tmp_path / "b", "cn-341522", port=huoqiu.port).start()
        await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), total), what="every receipt")
        assert await count(huoqiu, select(func.count()).select_from(INBOX)) == total
        left = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.state != "delivered")
        assert await count(wujiang, left) == 0
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def _at_least(value, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return await value >= expected


async def test_a_local_action_is_logged_before_the_messages_it_causes(pair) -> None:  # type: ignore[no-untyped-def]
    from federation import LocalEvent
    from federation.wire import decode_local_event, decode_log_record

    wujiang, _ = pair

    def open_case(tx: Tx, event: LocalEvent) -> str:
        wujiang.federation.enqueue(
            tx, to="cn-341522", kind="ping", payload=ping_payload(), case_id=event.case_id
        )
        return f"opened {event.case_id}"

    wujiang.federation.handlers.register_local("test.open", open_case)
    answer = await wujiang.db.write(
        lambda tx: wujiang.federation.act(
            tx, "test.open", ping_payload("陈添荣"), case_id="320509-20261122-000001"
        )
    )
    assert answer == "opened 320509-20261122-000001"
    rows = await wujiang.db.read(
        lambda s: s.execute(
            select(LOG.c.direction, LOG.c.entry_type, LOG.c.record)
            .where(LOG.c.case_id == "320509-20261122-000001")
            .order_by(LOG.c.seq)
        ).all()
    )
    assert [(d, t) for d, t, _ in rows] == [("local", "local"), ("out", "envelope")]
    event = decode_local_event(decode_log_record(rows[0][2]).body)
    assert event.kind == "test.open"
    assert event.case_id == "320509-20261122-000001"


async def test_a_refused_local_action_leaves_no_trace(pair) -> None:  # type: ignore[no-untyped-def]
    wujiang, _ = pair
    head = wujiang.federation.log.head

    def refuse(tx: Tx, event) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("the applicant's ID number has a wrong check character")

    wujiang.federation.handlers.register_local("test.refuse", refuse)
    with pytest.raises(ValueError, match="check character"):
        await wujiang.db.write(lambda tx: wujiang.federation.act(tx, "test.refuse", ping_payload()))
    assert wujiang.federation.log.head == head


async def test_messages_sealed_together_share_one_signature_per_recipient(tmp_path: Path) -> None:
    wujiang = await FedNode(tmp_path / "a", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    luan = await FedNode(tmp_path / "c", "cn-341500").start()
    try:
        await peer(wujiang, huoqiu)
        await peer(wujiang, luan)
        drafts = [
            Draft(to, "ping", ping_payload(f"{to} {n}"))
            for n in range(3)
            for to in ("cn-341522", "cn-341500")
        ]
        sent = await wujiang.federation.send(drafts)
        sealed = [open_envelope(m.wire) for m in sent]
        by_recipient: dict[str, list[SealedEnvelope]] = {}
        for item in sealed:
            by_recipient.setdefault(item.envelope.recipient, []).append(item)
        for recipient, items in by_recipient.items():
            assert len({item.signature for item in items}) == 1, recipient
            assert sorted(item.batch.index for item in items if item.batch) == [0, 1, 2]
        # Batch mates of one recipient are never another recipient's: no hashes of theirs leak.
        assert by_recipient["cn-341522"][0].signature != by_recipient["cn-341500"][0].signature
        for item in sealed:  # each verifies alone, with no other envelope of its batch at hand
            verify_envelope(item, wujiang.federation.identity.keys)
        await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 3), what="3 receipts from Huoqiu")
        await eventually(lambda: _equals(delivered(wujiang, "cn-341500"), 3), what="3 receipts from Lu'an")

        # Case messages queued in one transaction are sealed together too.
        for node in (wujiang, huoqiu):
            node.federation.handlers.register("test.step", lambda tx, envelope: None)

        def queue(tx: Tx) -> list[str]:
            return [
                wujiang.federation.enqueue(
                    tx,
                    to="cn-341522",
                    kind="test.step",
                    payload=ping_payload(str(n)),
                    case_id="320509-20261201-000001",
                ).wire
                for n in range(2)
            ] + [
                m.wire
                for m in wujiang.federation.enqueue_many(
                    tx,
                    [
                        Draft("cn-341522", "test.step", ping_payload(str(n)), "320509-20261201-000002")
                        for n in range(4)
                    ],
                )
            ]

        steps = [open_envelope(w) for w in await wujiang.db.write(queue)]
        assert [s.batch is None for s in steps[:2]] == [True, True]  # queued one by one: signed alone
        assert len({s.signature for s in steps[2:]}) == 1
        assert [s.envelope.case_seq for s in steps[2:]] == [1, 2, 3, 4]
        await eventually(lambda: _equals(delivered(wujiang, "cn-341522"), 9), what="the case steps receipted")
    finally:
        for node in (wujiang, huoqiu, luan):
            await node.stop()
