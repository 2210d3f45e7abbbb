"""`tongban log rebuild` on real nodes: after the seed's pension-withdrawal story and a transfer
chain A→B→C, every node's state is rebuilt from its log with no difference; a change made behind
a node's back shows up as one, naming the row."""

from __future__ import annotations

import sqlite3
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.cases.support import (
    CHEN,
    HUOQIU,
    WUJIANG,
    Hall,
    link,
    open_halls,
    open_hukou_case,
    scan_pdf,
    scan_png,
    write,
)
from tests.utils import wait_until

pytestmark = pytest.mark.e2e


def pension_withdrawal(wujiang: Hall, huoqiu: Hall, folder: Path) -> str:
    """The seed's story (as in test_seed_story): opened in Wujiang, decided in Huoqiu, rated."""
    number: str = wujiang.do(
        "case",
        "open",
        "--item",
        "pension-balance-withdrawal",
        "--applicant-name",
        "陈添荣",
        "--applicant-id",
        CHEN,
        "--phone",
        "13812345678",
        "--material",
        f"id-card={write(folder, 'id.pdf', scan_pdf('ID card'))}",
        "--material",
        f"application-form={write(folder, 'form.pdf', scan_pdf('application'))}",
        "--form",
        "bank_account=6222021234567890123",
        "--form",
        "reason=其他",
    )["number"]
    huoqiu.wait_state(number, "received")
    huoqiu.do("case", "supplement", number, "--need", "bank-card", "--note", "请补充本人银行卡")
    wujiang.wait_state(number, "supplement_requested")
    wujiang.do("case", "material", "add", number, f"bank-card={write(folder, 'card.png', scan_png(7))}")
    huoqiu.wait_state(number, "received")
    huoqiu.do("case", "accept", number)
    decision = write(folder, "decision.pdf", scan_pdf("decision"))
    huoqiu.do("case", "complete", number, "--result", "准予一次性提取", "--attach", str(decision))
    wujiang.wait_state(number, "completed")
    wujiang.do("case", "deliver", number)
    wujiang.do("case", "rate", number, "--stars", "5")
    huoqiu.wait_state(number, "closed")
    wujiang.wait_state(number, "closed")
    return number


def transfer_chain(wujiang: Hall, huoqiu: Hall, luan: Hall, folder: Path) -> str:
    """A case moved Wujiang → Huoqiu → Lu'an (as in test_transfer, without the crashes)."""
    number = open_hukou_case(wujiang, folder, "周秀英", "32050919700505002")
    wujiang.wait_state(number, "received")
    wujiang.do("case", "transfer", number, "--to", "cn-341522", "--reason", "户籍已迁至霍邱")
    wait_until(lambda: huoqiu.case(number)["role"] == "offered", what="the offer to reach Huoqiu")
    huoqiu.do("case", "transfer-accept", number)
    wait_until(lambda: wujiang.case(number)["holder"] == "cn-341522", what="the commit to reach Wujiang")
    huoqiu.wait_state(number, "received")
    huoqiu.do("case", "transfer", number, "--to", "cn-341500", "--reason", "需市级出具")
    wait_until(lambda: luan.case(number)["role"] == "offered", what="the offer to reach Lu'an")
    luan.do("case", "transfer-accept", number)
    everyone = (wujiang, huoqiu, luan)
    wait_until(
        lambda: all(h.case(number)["holder"] == "cn-341500" for h in everyone),
        timeout=60,
        what="everyone to see Lu'an hold the case",
    )
    luan.do("case", "accept", number)
    wujiang.wait_state(number, "accepted")
    return number


def quiet(halls: tuple[Hall, ...]) -> None:
    """Wait until nothing is left to deliver anywhere (a rebuild compares settled states)."""

    def settled() -> bool:
        return all(p["pending"] == 0 for h in halls for p in h.node.json("status")["peers"])

    wait_until(settled, what="every outbox to drain")


def rebuild(hall: Hall, into: Path) -> tuple[int, Any, str]:
    result = hall.node.cli("log", "rebuild", "--into", str(into), "--json")
    return result.returncode, result.stdout, result.stderr


def test_rebuild_after_the_seed_story_and_a_transfer_chain_gives_no_difference_then_finds_tampering(
    three: tuple[Hall, Hall, Hall], tmp_path: Path
) -> None:
    import json

    wujiang, huoqiu, luan = three
    pension = pension_withdrawal(wujiang, huoqiu, tmp_path)
    peer_changes = len(huoqiu.node.json_lines("log", "ls", "--kind", "peer.save"))
    assert peer_changes >= 2, "joining and allowing Wujiang are local entries"
    rotated = wujiang.node.json("keys", "rotate")  # the peers learn the new key: a logged peer change
    assert sorted(rotated["peers_told"]) == ["cn-341500", "cn-341522"]
    assert len(huoqiu.node.json_lines("log", "ls", "--kind", "peer.save")) == peer_changes + 1
    moved = transfer_chain(wujiang, huoqiu, luan, tmp_path)
    quiet((wujiang, huoqiu, luan))

    for hall in (wujiang, huoqiu, luan):  # running: through the local API
        code, out, err = rebuild(hall, tmp_path / f"rebuilt-{hall.node.node_id}")
        assert code == 0, f"{hall.node.node_id}: {out}{err}"
        document = json.loads(out)
        assert document["differences"] == []
        assert document["entries"] > 10
        assert "cases" in document["tables"]
        assert "peers" in document["tables"]

    huoqiu.node.stop()  # stopped: offline, on the home itself
    code, out, err = rebuild(huoqiu, tmp_path / "offline")
    assert code == 0, out + err
    case_id = huoqiu_case_id(huoqiu, pension)
    with sqlite3.connect(huoqiu.node.database()) as db:  # behind the node's back
        db.execute("UPDATE cases SET state = 'accepted' WHERE case_id = ?", (case_id,))
    code, out, err = rebuild(huoqiu, tmp_path / "tampered")
    assert code == 1
    differences = json.loads(out)["differences"]
    assert differences == [
        {"table": "cases", "key": case_id, "column": "state", "live": "accepted", "rebuilt": "closed"}
    ]
    assert "differs from the live state in 1 places" in err
    assert moved

    with sqlite3.connect(huoqiu.node.database()) as db:  # the log itself, past its guard
        db.execute("DROP TRIGGER IF EXISTS log_entries_no_update")
        (record,) = db.execute("SELECT record FROM log_entries WHERE seq = 3").fetchone()
        db.execute(
            "UPDATE log_entries SET record = ? WHERE seq = 3", (record[:-1] + bytes([record[-1] ^ 1]),)
        )
    code, out, err = rebuild(huoqiu, tmp_path / "forged")
    assert code == 1
    assert "the log does not verify, so it cannot be rebuilt from: entry 3" in err
    assert not (tmp_path / "forged").exists(), "nothing is written (no copy of the keys) for a bad log"


def huoqiu_case_id(hall: Hall, number: str) -> str:
    with sqlite3.connect(hall.node.database()) as db:
        (case_id,) = db.execute("SELECT case_id FROM cases WHERE number = ?", (number,)).fetchone()
    return str(case_id)


def test_a_node_on_postgresql_rebuilds_into_its_own_sqlite_and_finds_no_difference(
    tmp_path: Path, postgres_url: str
) -> None:
    import json

    wujiang, huoqiu = open_halls(tmp_path, WUJIANG, replace(HUOQIU, db=postgres_url))
    try:
        link(huoqiu, wujiang)
        number = pension_withdrawal(wujiang, huoqiu, tmp_path)
        quiet((wujiang, huoqiu))
        code, out, err = rebuild(huoqiu, tmp_path / "rebuilt")
        assert code == 0, out + err
        document = json.loads(out)
        assert document["differences"] == []
        assert {"cases", "inbox", "log_entries", "peers"} <= set(document["tables"])
        rebuilt = tomllib.loads((tmp_path / "rebuilt" / "node.toml").read_text(encoding="utf-8"))
        assert "url" not in rebuilt.get("storage", {}), "the rebuilt home writes to its own SQLite file"
        assert (tmp_path / "rebuilt" / "tongban.db").exists()
        assert huoqiu.node.json("status")["node_id"] == "cn-341522", "the live node kept serving"

        from sqlalchemy import create_engine, text

        engine = create_engine(postgres_url)  # behind the node's back
        try:
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE cases SET state = 'accepted' WHERE number = :n"), {"n": number}
                )
        finally:
            engine.dispose()
        code, out, err = rebuild(huoqiu, tmp_path / "tampered")
        assert code == 1, out + err
        [difference] = json.loads(out)["differences"]
        assert (difference["table"], difference["column"], difference["live"], difference["rebuilt"]) == (
            "cases",
            "state",
            "accepted",
            "closed",
        )
    finally:
        for hall in (wujiang, huoqiu):
            if hall.node.running:
                hall.node.stop()
