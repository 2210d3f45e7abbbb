"""The message log with real nodes: the restore drill, trace on both nodes, export and verify."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cases.support import CHEN, HUOQIU, WUJIANG, Hall, link, open_halls, scan_pdf, write
from tests.utils import NodeProcess, launch, peer_processes, wait_until

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


def test_trace_shows_the_messages_of_a_case_in_order_on_both_nodes(tmp_path: Path) -> None:
    wujiang, huoqiu = open_halls(tmp_path, WUJIANG, HUOQIU)
    try:
        link(huoqiu, wujiang)
        number = wujiang.do(
            "case",
            "open",
            "--item",
            "pension-balance-withdrawal",
            "--applicant-name",
            "陈添荣",
            "--applicant-id",
            CHEN,
            "--material",
            f"id-card={write(tmp_path, 'id.pdf', scan_pdf('id'))}",
            "--material",
            f"application-form={write(tmp_path, 'form.pdf', scan_pdf('form'))}",
            "--form",
            "bank_account=6222021234567890123",
            "--form",
            "reason=其他",
        )["number"]
        huoqiu.wait_state(number, "received")
        huoqiu.do("case", "accept", number)
        huoqiu.do("case", "complete", number, "--result", "准予提取")
        wujiang.wait_state(number, "completed")
        case_id = wujiang.case(number)["case_id"]

        def delivered(hall: Hall) -> list[dict[str, Any]] | None:
            # By the number clerks and auditors read off the receipt; the log holds the case ID.
            lines = hall.node.json_lines("log", "trace", number)
            sent = [line for line in lines if line["direction"] == "out"]
            return lines if sent and all(line["outcome"] == "applied" for line in sent) else None

        here = wait_until(lambda: delivered(wujiang), what="Wujiang's messages of the case to be receipted")
        there = wait_until(lambda: delivered(huoqiu), what="Huoqiu's messages of the case to be receipted")
        assert huoqiu.node.json_lines("log", "trace", case_id) == there, "the case ID finds the same"
    finally:
        for hall in (wujiang, huoqiu):
            hall.node.stop()

    for lines in (here, there):
        assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
        assert all(line["receipt_seq"] > line["seq"] for line in lines if line["direction"] == "out")
        assert {line["case_id"] for line in lines} == {case_id}
    assert [line["kind"] for line in here][:2] == ["case.open", "case.submit"]
    assert there[0]["kind"] == "case.submit"

    def messages(lines: list[dict[str, Any]], direction: str) -> list[tuple[str, str, int]]:
        return [(x["message_id"], x["kind"], x["case_seq"]) for x in lines if x["direction"] == direction]

    assert messages(here, "out") == messages(there, "in"), "what Wujiang sent, Huoqiu received, in order"
    assert messages(there, "out") == messages(here, "in"), "and the other way round"
    assert [seq for _, _, seq in messages(there, "out")] == list(range(1, len(messages(there, "out")) + 1))
    assert len(messages(there, "out")) >= 2, "Huoqiu told Wujiang of the acceptance and the completion"
