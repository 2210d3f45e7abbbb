"""The outbox and its senders, on SQLite and PostgreSQL: backlog, wake-up on contact, parking, resend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from federation import FederationSettings, SealedEnvelope, SenderSettings, Tx
from federation.models import INBOX, OUTBOX
from federation.wire import ping_payload
from tests.utils import FedNode, eventually, peer

pytestmark = pytest.mark.asyncio


async def states(node: FedNode) -> dict[str, int]:
    rows = await node.db.read(
        lambda s: s.execute(select(OUTBOX.c.state, func.count()).group_by(OUTBOX.c.state)).all()
    )
    return {state: int(count) for state, count in rows}


async def test_backlog_drains_when_the_peer_returns_woken_by_its_contact(tmp_path: Path, db_url: str) -> None:
    # A long backoff: without the wake-up on contact the backlog would wait a minute or more.
    slow = FederationSettings(sender=SenderSettings(backoff_base=60.0, backoff_cap=300.0))
    wujiang = await FedNode(tmp_path / "a", "cn-320509", db_url=db_url, settings=slow).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        await huoqiu.stop()
        await wujiang.federation.ping("cn-341522", 200)

        async def backing_off() -> bool:
            state = (await wujiang.federation.peer_states())[0]
            return state.retry_at_us is not None and state.pending == 200

        await eventually(backing_off, what="the queue to notice the peer is gone")
        started = time.monotonic()
        await huoqiu.start()

        async def drained() -> bool:
            return (await states(wujiang)) == {"delivered": 200}

        await eventually(drained, timeout=20, what="the backlog to drain")
        assert time.monotonic() - started < 20
        received = await huoqiu.db.read(
            lambda s: s.execute(select(func.count()).select_from(INBOX)).scalar_one()
        )
        assert received == 200
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def test_a_failing_message_is_parked_and_resend_keeps_its_id(tmp_path: Path, db_url: str) -> None:
    quick = FederationSettings(sender=SenderSettings(backoff_base=0.01, backoff_cap=0.05, park_after=3))
    wujiang = await FedNode(tmp_path / "a", "cn-320509", db_url=db_url, settings=quick).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    try:
        await peer(wujiang, huoqiu)
        healthy = {"now": False}

        def flaky(tx: Tx, envelope: SealedEnvelope) -> None:
            if not healthy["now"]:
                raise RuntimeError("the receiving domain is broken today")

        huoqiu.federation.handlers.register("test.flaky", flaky)
        message = await wujiang.db.write(
            lambda tx: wujiang.federation.enqueue(
                tx, to="cn-341522", kind="test.flaky", payload=ping_payload()
            )
        )

        async def parked() -> bool:
            return (await states(wujiang)) == {"parked": 1}

        await eventually(parked, what="the message to be parked")
        state = (await wujiang.federation.peer_states())[0]
        assert state.parked == 1
        assert "parked" in state.last_error
        rows, total = await wujiang.db.read(lambda s: wujiang.federation.outbox.list(s, parked_only=True))
        assert total == 1
        assert rows[0].message_id == message.message_id
        assert rows[0].attempts == 3
        assert "failed to apply" in rows[0].last_error

        healthy["now"] = True
        await wujiang.db.write(lambda tx: wujiang.federation.outbox.resend(tx, message.message_id))

        async def delivered() -> bool:
            return (await states(wujiang)) == {"delivered": 1}

        await eventually(delivered, what="the resent message to be delivered")
        received = await huoqiu.db.read(lambda s: s.execute(select(INBOX.c.message_id)).scalars().all())
        assert received == [message.message_id]
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def test_case_sequence_numbers_count_per_peer_and_case(tmp_path: Path, db_url: str) -> None:
    wujiang = await FedNode(tmp_path / "a", "cn-320509", db_url=db_url).start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522").start()
    luan = await FedNode(tmp_path / "c", "cn-341500").start()
    try:
        await peer(wujiang, huoqiu)
        await peer(wujiang, luan)
        for node in (huoqiu, luan):
            node.federation.handlers.register("test.step", lambda tx, e: None)

        def queue(tx: Tx) -> list[tuple[str, str, int]]:
            sent = []
            for to, case in [
                ("cn-341522", "A"),
                ("cn-341522", "A"),
                ("cn-341500", "A"),
                ("cn-341522", "B"),
                ("cn-341522", "A"),
            ]:
                message = wujiang.federation.enqueue(
                    tx, to=to, kind="test.step", payload=ping_payload(), case_id=case
                )
                sent.append((to, case, message.case_seq))
            return sent

        assert await wujiang.db.write(queue) == [
            ("cn-341522", "A", 1),
            ("cn-341522", "A", 2),
            ("cn-341500", "A", 1),
            ("cn-341522", "B", 1),
            ("cn-341522", "A", 3),
        ]
    finally:
        for node in (wujiang, huoqiu, luan):
            await node.stop()
