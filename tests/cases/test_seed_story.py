"""The seed's story between two real nodes: Chen Tianrong, registered in Huoqiu, withdraws his
pension-account balance at the Wujiang window."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.cases.support import CHEN, Hall, history, scan_pdf, scan_png, write
from tests.utils import wait_until

pytestmark = pytest.mark.e2e


def test_pension_withdrawal_across_provinces_ends_with_identical_histories(
    halls: tuple[Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu = halls
    id_card = write(tmp_path, "身份证.pdf", scan_pdf("ID card"))
    form = write(tmp_path, "申请表.pdf", scan_pdf("application"))
    card = write(tmp_path, "bank card.png", scan_png(7))
    receipt_pdf = tmp_path / "receipt.pdf"

    opened = wujiang.do(
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
        f"id-card={id_card}",
        "--material",
        f"application-form={form}",
        "--form",
        "bank_account=6222021234567890123",
        "--form",
        "reason=其他",
        "--receipt-pdf",
        str(receipt_pdf),
    )
    number = opened["number"]
    assert number.startswith("320509-")
    assert len(number) == len("320509-20261122-000001")
    assert opened["holder"] == "cn-341522", "routed by the applicant's division code"
    assert "受理回执" in opened["receipt"]
    assert number in opened["receipt"]
    assert CHEN not in opened["receipt"], "the receipt masks the ID number"
    assert receipt_pdf.read_bytes().startswith(b"%PDF-")

    huoqiu.wait_state(number, "received")
    huoqiu.do("case", "supplement", number, "--need", "bank-card", "--note", "请补充本人银行卡")
    wujiang.wait_state(number, "supplement_requested")
    wujiang.do("case", "material", "add", number, f"bank-card={card}")
    huoqiu.wait_state(number, "received")
    accepted = huoqiu.do("case", "accept", number)
    assert accepted["due_date"], "acceptance sets the due date in working days"
    decision = write(tmp_path, "决定书.pdf", scan_pdf("decision"))
    huoqiu.do("case", "complete", number, "--result", "准予一次性提取，款项已划转", "--attach", str(decision))
    completed = wujiang.wait_state(number, "completed")
    [result] = [m for m in completed["materials"] if m["kind"] == "result"]
    assert result["sha256"] == hashlib.sha256(decision.read_bytes()).hexdigest(), (
        "the decision reached Wujiang"
    )
    wujiang.do("case", "deliver", number)
    wujiang.do("case", "rate", number, "--stars", "5", "--comment", "十几分钟就办好了")

    here = huoqiu.wait_state(number, "closed")
    there = wujiang.wait_state(number, "closed")
    assert history(here) == history(there)
    actions = [e["action"] for e in there["history"]]
    assert actions == [
        "submit",
        "receive",
        "supplement",
        "add-material",
        "resubmit",
        "receive",
        "accept",
        "complete",
        "deliver",
        "rate",
    ]
    clerks = {e["action"]: (e["node"], e["clerk"]) for e in there["history"]}
    assert clerks["submit"] == ("cn-320509", "王芳")
    assert clerks["accept"] == ("cn-341522", "李明")
    assert (there["stars"], here["stars"]) == (5, 5)
    assert here["due_date"] == there["due_date"]

    got = tmp_path / "copy.png"
    fetched = huoqiu.node.json("case", "material", "get", number, "bank-card", "-o", str(got))
    assert fetched["sha256"] == hashlib.sha256(card.read_bytes()).hexdigest()
    assert {m["kind"]: m["sha256"] for m in here["materials"]} == {
        m["kind"]: m["sha256"] for m in there["materials"]
    }

    listed = wujiang.node.json_lines("case", "list", "--outbox")
    assert [c["number"] for c in listed] == [number]
    assert listed[0]["applicant_id"] != CHEN
    assert listed[0]["applicant_id"].startswith("341522")
    assert listed[0]["phone"] == "138****5678"
    assert here["applicant"]["id_number"] == CHEN, "case show gives it in full"

    # A clerk reads the history in Beijing time, as on the receipt, whatever zone the server keeps.
    submitted = datetime.fromisoformat(there["history"][0]["at"].replace("Z", "+00:00"))
    beijing = submitted.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    for zone in ("UTC", "America/New_York"):
        table = wujiang.node.cli("case", "show", number, env={"TZ": zone})
        assert table.returncode == 0, table.stderr
        [row] = [line for line in table.stdout.splitlines() if " submit " in line]
        assert row.startswith(beijing), f"with TZ={zone} the history shows {row!r}, not {beijing} (Beijing)"


def test_the_holder_decides_a_withdrawal_so_both_nodes_agree(
    halls: tuple[Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu = halls
    id_card = write(tmp_path, "id.pdf", scan_pdf("id"))
    form = write(tmp_path, "form.pdf", scan_pdf("form"))
    opening = (
        "case",
        "open",
        "--item",
        "pension-balance-withdrawal",
        "--applicant-name",
        "陈添荣",
        "--applicant-id",
        CHEN,
        "--material",
        f"id-card={id_card}",
        "--material",
        f"application-form={form}",
        "--form",
        "bank_account=6222021234567890123",
        "--form",
        "reason=其他",
    )
    early = wujiang.do(*opening)["number"]
    huoqiu.wait_state(early, "received")
    asked = wujiang.do("case", "withdraw", early, "--reason", "申请人改日再办")
    assert asked["state"] == "received", "the accepting node asks; the holder decides"
    withdrawn = wujiang.wait_state(early, "withdrawn")
    assert [e["action"] for e in withdrawn["history"]][-2:] == ["withdraw-request", "withdraw"]
    assert history(withdrawn) == history(huoqiu.wait_state(early, "withdrawn"))

    late = wujiang.do(*opening)["number"]
    huoqiu.wait_state(late, "received")
    huoqiu.do("case", "accept", late)
    huoqiu.do("case", "complete", late, "--result", "准予提取")
    wujiang.wait_state(late, "completed")
    wujiang.do("case", "withdraw", late, "--reason", "申请人想撤回")

    def refused(h: Hall) -> dict[str, object] | None:
        view = h.case(late)
        return view if view["history"][-1]["action"] == "withdraw-refused" else None

    there = wait_until(lambda: refused(wujiang), what="Huoqiu's refusal to reach Wujiang")
    here = huoqiu.case(late)
    assert (there["state"], here["state"]) == ("completed", "completed")
    assert "already completed at cn-341522" in there["history"][-1]["reason"]
    assert history(there) == history(here)
