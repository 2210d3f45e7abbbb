"""Call signaling between two nodes' federations in this process (real mutual TLS, real SQLite).

The cases domain is stood in for by `FakeCaseHolders`, so that a node can believe what the other
does not: the only way to make a caller ring a node that does not hold the case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from federation.errors import FailedPrecondition, NotFound
from federation.models import LOG
from tests.utils import FedNode, eventually, peer
from video.calls import Calls, CallSettings
from video.cases import FakeCaseHolders
from video.models import CallRow

CASE = "320509-20261122-000007"
OFFER = "v=0 (an SDP offer; signaling carries it without reading it)"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Calls, Calls, FakeCaseHolders, FakeCaseHolders]]:
    wujiang = await FedNode(tmp_path / "w", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "h", "cn-341522").start()
    await peer(huoqiu, wujiang)
    seen_at_wujiang, seen_at_huoqiu = FakeCaseHolders(), FakeCaseHolders()
    settings = CallSettings(ring_timeout=30)
    calls = (
        Calls(wujiang.federation, seen_at_wujiang, settings),
        Calls(huoqiu.federation, seen_at_huoqiu, settings),
    )
    for side in calls:
        side.register()
    try:
        yield calls[0], calls[1], seen_at_wujiang, seen_at_huoqiu
    finally:
        for side in calls:
            await side.stop()
        await wujiang.stop()
        await huoqiu.stop()


async def ended(calls: Calls, call_id: str) -> CallRow:
    return await eventually(  # type: ignore[no-any-return]
        lambda: _ended(calls, call_id), what=f"call {call_id} to end at {calls.node_id}"
    )


async def _ended(calls: Calls, call_id: str) -> CallRow | None:
    row = await calls.get(call_id)
    return row if row.state == "ended" else None


async def test_call_about_a_case_the_callee_does_not_know_is_refused_with_a_reason(pair) -> None:
    wujiang, huoqiu, seen_at_wujiang, _ = pair
    seen_at_wujiang.holders[CASE] = "cn-341522"
    placed = await wujiang.place(CASE, OFFER, shares=False, records=False, label="")
    row = await ended(wujiang, placed.call_id)
    assert row.outcome == "refused"
    assert row.end_reason == (
        f"cn-341522 refused the call: cn-341522 knows no case {CASE}; a call must be about a case this node holds"
    )
    with pytest.raises(NotFound):
        await huoqiu.get(placed.call_id)


async def test_call_about_a_case_held_elsewhere_names_the_holder(pair) -> None:
    wujiang, _huoqiu, seen_at_wujiang, seen_at_huoqiu = pair
    seen_at_wujiang.holders[CASE] = "cn-341522"  # Wujiang has not heard of the transfer yet
    seen_at_huoqiu.holders[CASE] = "cn-341500"
    placed = await wujiang.place(CASE, OFFER, shares=False, records=False, label="")
    row = await ended(wujiang, placed.call_id)
    assert row.outcome == "refused"
    assert f"cn-341522 does not hold case {CASE} (its holder is cn-341500); call cn-341500" in row.end_reason


async def test_every_step_of_a_call_is_in_both_message_logs(pair) -> None:
    wujiang, huoqiu, seen_at_wujiang, seen_at_huoqiu = pair
    seen_at_wujiang.holders[CASE] = seen_at_huoqiu.holders[CASE] = "cn-341522"
    placed = await wujiang.place(CASE, OFFER, shares=True, records=True, label="吴江窗口")
    ringing = await huoqiu.next_ringing("", wait=True, wait_seconds=30)
    assert (ringing.call_id, ringing.offer_sdp, ringing.direction) == (placed.call_id, OFFER, "in")
    await huoqiu.answer(placed.call_id, "v=0 (an answer)", "霍邱窗口")
    answered = await eventually(
        lambda: _state(wujiang, placed.call_id, "answered"), what="the answer to reach Wujiang"
    )
    assert answered.answer_sdp == "v=0 (an answer)"
    assert answered.peer_label == "霍邱窗口"
    with pytest.raises(FailedPrecondition):
        await huoqiu.answer(placed.call_id, "v=0 (a second answer)", "")
    await wujiang.progress(placed.call_id, True, None)
    await wujiang.finish(placed.call_id, "the planned 5 s are over")
    there = await ended(huoqiu, placed.call_id)
    assert there.end_reason == "cn-320509 hung up: the planned 5 s are over"
    assert there.outcome == "completed"

    async def kinds(calls: Calls) -> list[str]:
        def read(session):
            query = select(LOG.c.kind).where(LOG.c.case_id == CASE).order_by(LOG.c.seq)
            return [k for k in session.execute(query).scalars() if k]

        return await calls.db.read(read)

    here_kinds, there_kinds = await kinds(wujiang), await kinds(huoqiu)
    for kind in (
        "video.call.place",
        "video.invite",
        "video.answer",
        "video.call.connected",
        "video.call.finish",
        "video.hangup",
    ):
        assert kind in here_kinds, here_kinds
    for kind in ("video.invite", "video.call.answer", "video.answer", "video.hangup"):
        assert kind in there_kinds, there_kinds


async def _state(calls: Calls, call_id: str, state: str) -> CallRow | None:
    row = await calls.get(call_id)
    return row if row.state == state else None


async def test_caller_hanging_up_while_it_rings_cancels_the_call_at_both_nodes(pair) -> None:
    wujiang, huoqiu, seen_at_wujiang, seen_at_huoqiu = pair
    seen_at_wujiang.holders[CASE] = seen_at_huoqiu.holders[CASE] = "cn-341522"
    placed = await wujiang.place(CASE, OFFER, shares=False, records=False, label="")
    await eventually(lambda: _state(huoqiu, placed.call_id, "ringing"), what="Huoqiu to ring")
    await wujiang.finish(placed.call_id, "hung up (Ctrl-C)")
    here, there = await ended(wujiang, placed.call_id), await ended(huoqiu, placed.call_id)
    assert (here.outcome, there.outcome) == ("cancelled", "cancelled")
    assert there.end_reason == "cn-320509 hung up: hung up (Ctrl-C)"
    with pytest.raises(FailedPrecondition, match="over"):
        await huoqiu.answer(placed.call_id, "v=0", "")
