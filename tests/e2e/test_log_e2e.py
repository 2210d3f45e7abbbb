"""The message log with real nodes: the restore drill, trace on both nodes, export and verify."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import NodeProcess, launch, peer_processes

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    wujiang, huoqiu = launch(
        NodeProcess(tmp_path, "cn-320509", "吴江区政务服务中心"),
        NodeProcess(tmp_path, "cn-341522", "霍邱县政务服务中心"),
    )
    peer_processes(huoqiu, wujiang)
    yield wujiang, huoqiu
    for node in (wujiang, huoqiu):
        if node.running:
            node.stop()


def received_from(node: NodeProcess, peer: str) -> int:
    status = node.json("status")
    return int(next(p["received"] for p in status["peers"] if p["node_id"] == peer))


def copy_database(home: Path, to: Path) -> None:
    to.mkdir()
    for path in home.glob("tongban.db*"):
        shutil.copy2(path, to / path.name)


def restore_database(backup: Path, home: Path) -> None:
    for path in home.glob("tongban.db*"):
        path.unlink()
    for path in backup.iterdir():
        shutil.copy2(path, home / path.name)


def test_restore_drill_replay_brings_back_what_the_backup_lost_and_nothing_twice(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    assert wujiang.json("ping", "cn-341522", "--count", "1000")["receipted"] == 1000
    huoqiu.stop()
    copy_database(huoqiu.home, tmp_path / "backup")  # taken after the first 1,000
    huoqiu.start()
    assert wujiang.json("ping", "cn-341522", "--count", "1000")["receipted"] == 1000
    assert received_from(huoqiu, "cn-320509") == 2000
    huoqiu.stop()
    restore_database(tmp_path / "backup", huoqiu.home)
    huoqiu.start()
    assert received_from(huoqiu, "cn-320509") == 1000, "the backup holds the first 1,000 only"

    bundle = tmp_path / "wujiang.tblog"
    exported = wujiang.json("log", "export", "--peer", "cn-341522", "--kind", "ping", "-o", str(bundle))
    assert exported["selected"] == 2000
    assert wujiang.cli("log", "verify", "--file", str(bundle)).returncode == 0

    dry = wujiang.json_lines("log", "replay", str(bundle), "--to", "cn-341522", "--dry-run")
    assert {line["outcome"] for line in dry} == {"would send"}
    assert len(dry) == 2000
    assert received_from(huoqiu, "cn-320509") == 1000, "a dry run sends nothing"

    outcomes = wujiang.json_lines("log", "replay", str(bundle), "--to", "cn-341522")
    counted: dict[str, int] = {}
    for line in outcomes:
        counted[line["outcome"]] = counted.get(line["outcome"], 0) + 1
    assert counted == {"duplicate": 1000, "new": 1000}

    assert received_from(huoqiu, "cn-320509") == 2000
    inbound = huoqiu.json_lines(
        "log", "ls", "--peer", "cn-320509", "--direction", "in", "--kind", "ping", "--limit", "100000"
    )
    ids = [line["message_id"] for line in inbound]
    assert len(ids) == 2000
    assert len(set(ids)) == 2000, "every message once, none twice"
    assert huoqiu.cli("log", "verify").returncode == 0
    assert wujiang.cli("log", "verify").returncode == 0


def test_replay_skips_messages_this_node_may_not_deliver_with_the_reason(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    wujiang.json("ping", "cn-341522", "--count", "2")
    huoqiu.json("ping", "cn-320509", "--count", "3")
    bundle = tmp_path / "wujiang.tblog"
    wujiang.json("log", "export", "--kind", "ping", "-o", str(bundle))
    lines = wujiang.json_lines("log", "replay", str(bundle), "--to", "cn-341522", "--dry-run")
    skipped = [line for line in lines if line["outcome"] == "skipped"]
    assert len(skipped) == 3
    assert all("only cn-341522 can deliver it" in line["reason"] for line in skipped)
    assert len([line for line in lines if line["outcome"] == "would send"]) == 2
    refused = wujiang.cli("log", "replay", "--to", "cn-341522")
    assert refused.returncode != 0
    assert "--since" in refused.stderr


def test_trace_shows_the_messages_of_a_case_in_order_on_both_nodes(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, _huoqiu = pair
    wujiang.json("ping", "cn-341522", "--count", "1")
    entries = wujiang.json_lines("log", "ls", "--kind", "ping", "--direction", "out")
    assert entries
    assert entries[0]["receipt_seq"] > entries[0]["seq"]
    shown = wujiang.json("log", "show", entries[0]["message_id"])
    assert shown["signature"] == "valid"
    assert shown["envelope"]["recipient"] == "cn-341522"
