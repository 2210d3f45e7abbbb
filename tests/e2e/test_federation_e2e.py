"""Real node processes on loopback, driven by the real `tongban` command.

Two and three nodes peer by token and exchange 1,000 messages each way they are asked to; a
5,000-message burst survives `kill -9` of the receiver and then of the sender; a peer that was
away drains its backlog without anyone doing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlmodel import Session

from federation.envelope import open_receipt
from federation.identity import NodeIdentity
from federation.log import verify_log
from federation.models import INBOX, LOG, OUTBOX
from federation.wire import decode_log_record
from tests.utils import NodeProcess, launch, peer_processes, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        if node.running:
            node.stop()


def make(nodes: list[NodeProcess], *planned: NodeProcess) -> tuple[NodeProcess, ...]:
    """Start the planned nodes together; the fixture stops them."""
    nodes.extend(planned)
    return launch(*planned)


def plan_wujiang(tmp_path: Path, **config: Any) -> NodeProcess:
    return NodeProcess(tmp_path, "cn-320509", "吴江区政务服务中心", config=config)


def plan_huoqiu(tmp_path: Path, **config: Any) -> NodeProcess:
    return NodeProcess(tmp_path, "cn-341522", "霍邱县政务服务中心", config=config)


def plan_luan(tmp_path: Path, **config: Any) -> NodeProcess:
    return NodeProcess(tmp_path, "cn-341500", "六安市政务服务中心", config=config)


def query(node: NodeProcess, statement: Any) -> list[Any]:
    """Read a node's SQLite database from outside (read-only; fine while it runs: WAL)."""
    engine = create_engine(f"sqlite:///file:{node.database()}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            return list(session.execute(statement).all())
    finally:
        engine.dispose()


def count(node: NodeProcess, statement: Any) -> int:
    return int(query(node, statement)[0][0])


def check_exchange(sender: NodeProcess, receiver: NodeProcess, ids: list[str]) -> None:
    """Every message: receipted at the sender, in both logs, applied once at the receiver."""
    outbox = dict(
        query(sender, select(OUTBOX.c.message_id, OUTBOX.c.state).where(OUTBOX.c.message_id.in_(ids)))
    )
    assert len(outbox) == len(ids)
    assert set(outbox.values()) == {"delivered"}
    out_entries = count(
        sender,
        select(func.count()).where(
            LOG.c.message_id.in_(ids), LOG.c.direction == "out", LOG.c.entry_type == "envelope"
        ),
    )
    in_entries = count(
        receiver,
        select(func.count()).where(
            LOG.c.message_id.in_(ids), LOG.c.direction == "in", LOG.c.entry_type == "envelope"
        ),
    )
    assert out_entries == len(ids), f"{sender.node_id} logged {out_entries} of {len(ids)} envelopes"
    assert in_entries == len(ids), f"{receiver.node_id} logged {in_entries} of {len(ids)} envelopes"
    received = count(receiver, select(func.count()).select_from(INBOX).where(INBOX.c.message_id.in_(ids)))
    assert received == len(ids)
    # The receipts the sender logged acknowledge exactly these messages.
    receipts = query(
        sender,
        select(LOG.c.record).where(
            LOG.c.direction == "in", LOG.c.entry_type == "receipt", LOG.c.peer == receiver.node_id
        ),
    )
    acked = {
        ack.message_id
        for (record,) in receipts
        for ack in open_receipt(decode_log_record(record).body).receipt.acks
    }
    assert set(ids) <= acked


def verify_chain(node: NodeProcess) -> tuple[int, int]:
    """Verify a stopped node's log chain and checkpoints; (entries, checkpoints)."""
    identity = NodeIdentity.load(node.home / "keys", node.node_id, node.name)
    engine = create_engine(f"sqlite:///file:{node.database()}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            result = verify_log(session, identity.keys)
    finally:
        engine.dispose()
    assert result.ok, f"{node.node_id}: {result.problem}"
    assert result.checkpoints >= 1, "a clean shutdown signs a final checkpoint"
    return result.entries, result.checkpoints


def test_two_nodes_peer_by_token_and_exchange_1000_messages(nodes: list[NodeProcess], tmp_path: Path) -> None:
    wujiang, huoqiu = make(nodes, plan_wujiang(tmp_path), plan_huoqiu(tmp_path))
    pinned = peer_processes(wujiang, huoqiu)
    assert pinned["node_id"] == "cn-320509"
    assert pinned["tls_fingerprint"] == wujiang.json("status")["tls_fingerprint"]
    inviter_view = wujiang.json("peer", "show", "cn-341522")
    assert inviter_view["tls_fingerprint"] == huoqiu.json("status")["tls_fingerprint"]

    one = huoqiu.json("ping", "cn-320509")
    assert one["receipted"] == 1
    assert one["rtt_ms"]["max"] > 0
    result = wujiang.json("ping", "cn-341522", "--count", "1000", timeout=300)
    assert result["receipted"] == 1000
    assert len(result["message_ids"]) == 1000
    check_exchange(wujiang, huoqiu, result["message_ids"])

    status = wujiang.json("status")
    [peer_state] = status["peers"]
    assert (peer_state["sent"], peer_state["pending"], peer_state["parked"]) == (1000, 0, 0)
    assert peer_state["received"] == 1
    assert huoqiu.json("status")["peers"][0]["received"] == 1000
    for node in (wujiang, huoqiu):
        assert node.stop() == 0
        entries, _ = verify_chain(node)
        assert entries >= 1001


def test_three_nodes_exchange_1000_messages_around_a_ring(nodes: list[NodeProcess], tmp_path: Path) -> None:
    wujiang, huoqiu, luan = make(nodes, plan_wujiang(tmp_path), plan_huoqiu(tmp_path), plan_luan(tmp_path))
    peer_processes(wujiang, huoqiu)
    peer_processes(huoqiu, luan)
    peer_processes(luan, wujiang)
    ring = [(wujiang, huoqiu), (huoqiu, luan), (luan, wujiang)]
    sent = {}
    for sender, receiver in ring:
        sent[sender.node_id] = sender.json("ping", receiver.node_id, "--count", "1000", "--no-wait")[
            "message_ids"
        ]
    for sender, _ in ring:
        wait_until(
            lambda s=sender: all(p["pending"] == 0 for p in s.json("status")["peers"]),
            timeout=120,
            what=f"{sender.node_id}'s outbox to empty",
        )
    for sender, receiver in ring:
        check_exchange(sender, receiver, sent[sender.node_id])
    for node in (wujiang, huoqiu, luan):
        assert node.stop() == 0
        verify_chain(node)


def test_kill_9_of_receiver_then_sender_mid_burst_loses_and_repeats_nothing(
    nodes: list[NodeProcess], tmp_path: Path
) -> None:
    # Small batches keep the burst in flight long enough to kill each side in the middle of it.
    wujiang, huoqiu = make(
        nodes, plan_wujiang(tmp_path, **{"federation.max_batch": 8}), plan_huoqiu(tmp_path)
    )
    peer_processes(wujiang, huoqiu)
    burst = wujiang.json("ping", "cn-341522", "--count", "5000", "--no-wait", "--size", "256")["message_ids"]
    assert len(burst) == 5000
    received = select(func.count()).select_from(INBOX).where(INBOX.c.sender == "cn-320509")

    first = wait_until(
        lambda: (n := count(huoqiu, received)) >= 500 and n, interval=0.01, what="500 received"
    )
    huoqiu.kill()
    assert first < 5000, "the receiver was killed after the burst, not in it"
    huoqiu.start()
    second = wait_until(
        lambda: (n := count(huoqiu, received)) >= 2500 and n, interval=0.01, what="2500 received"
    )
    wujiang.kill()
    assert second < 5000, "the sender was killed after the burst, not in it"
    wujiang.start()

    wait_until(
        lambda: (
            count(wujiang, select(func.count()).select_from(OUTBOX).where(OUTBOX.c.state == "delivered"))
            == 5000
        ),
        timeout=180,
        what="all 5000 receipted",
    )
    assert wujiang.stop() == 0
    assert huoqiu.stop() == 0
    per_id = query(
        huoqiu,
        select(LOG.c.message_id, func.count())
        .where(LOG.c.direction == "in", LOG.c.entry_type == "envelope", LOG.c.peer == "cn-320509")
        .group_by(LOG.c.message_id),
    )
    assert len(per_id) == 5000, f"{len(per_id)} distinct messages arrived"
    assert {n for _, n in per_id} == {1}, "a message was applied twice"
    assert {mid for mid, _ in per_id} == set(burst)
    check_exchange(wujiang, huoqiu, burst)
    verify_chain(wujiang)
    verify_chain(huoqiu)


def test_a_peer_away_for_a_while_drains_its_backlog_on_return(
    nodes: list[NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = make(nodes, plan_wujiang(tmp_path), plan_huoqiu(tmp_path))
    peer_processes(wujiang, huoqiu)
    assert huoqiu.stop() == 0
    queued = wujiang.json("ping", "cn-341522", "--count", "300", "--no-wait")["message_ids"]

    def backing_off() -> bool:
        [state] = wujiang.json("status")["peers"]
        return state["pending"] == 300 and bool(state["last_error"]) and state["retry_at"] is not None

    wait_until(backing_off, what="the queue to back off from the absent peer")
    huoqiu.start()
    wait_until(
        lambda: wujiang.json("status")["peers"][0]["pending"] == 0, timeout=60, what="the backlog to drain"
    )
    check_exchange(wujiang, huoqiu, queued)


def test_a_node_on_postgresql_peers_and_delivers(
    nodes: list[NodeProcess], tmp_path: Path, postgres_url: str
) -> None:
    on_postgres = NodeProcess(tmp_path, "cn-320509", "吴江区政务服务中心", db=postgres_url)
    wujiang, huoqiu = make(nodes, on_postgres, plan_huoqiu(tmp_path))
    peer_processes(wujiang, huoqiu)
    assert wujiang.json("status")["database"].startswith("postgresql+psycopg://")
    result = wujiang.json("ping", "cn-341522", "--count", "300")
    assert result["receipted"] == 300
    back = huoqiu.json("ping", "cn-320509", "--count", "50")
    assert back["receipted"] == 50
    [state] = wujiang.json("status")["peers"]
    assert (state["sent"], state["received"]) == (300, 50)
    assert not (wujiang.home / "tongban.db").exists(), "the PostgreSQL node keeps no SQLite file"
