"""Certificates between real node processes, driven by the real `tongban` command.

Wujiang (cn-320509) is the window where the applicant stands; Huoqiu (cn-341522) holds the
records and issues. The two nodes are started once for this module and the stories run on them
in order: request -> preview -> issue -> get -> verify offline (PDF, JSON, QR); revocation seen
at the peer within one refresh; suspension and reinstatement; the key rotation drill; a refused
request and one rejected on arrival.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from node.certs import sdjwt
from tests.utils import ROOT, NodeProcess, launch, peer_processes, wait_until

pytestmark = pytest.mark.e2e

APPLICANT = ("34152219800101123X", "陈添荣")
REFRESH_SECONDS = 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root = tmp_path_factory.mktemp("certs")
    config = {"certs.refresh_seconds": REFRESH_SECONDS, "certs.status_ttl_seconds": 3600}
    wujiang, huoqiu = launch(
        NodeProcess(root, "cn-320509", "吴江区政务服务中心", config=config),
        NodeProcess(root, "cn-341522", "霍邱县政务服务中心", config=config),
    )
    try:
        peer_processes(huoqiu, wujiang)
        huoqiu.json("catalog", "import", str(ROOT / "config" / "catalog-cn-341522.toml"))
        huoqiu.json(
            "peer", "allow", "cn-320509", "pension-balance-withdrawal", "household-registration-proof"
        )
        # No `catalog refresh` at Wujiang: its `cert trust refresh` fetches keys, catalog (the
        # types Huoqiu may issue) and status list together.
        yield wujiang, huoqiu
    finally:
        for node in (wujiang, huoqiu):
            if node.running:
                node.stop()


def request(wujiang: NodeProcess, cert_type: str = "pension-balance-proof") -> dict[str, Any]:
    sent: dict[str, Any] = wujiang.json(
        "cert", "request", "--from", "cn-341522", "--type", cert_type,
        "--applicant-id", APPLICANT[0], "--applicant-name", APPLICANT[1],
        "--purpose", "养老保险个人账户一次性提取", "--case", "320509-20261122-000123",
    )  # fmt: skip
    return sent


def pending(huoqiu: NodeProcess, request_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: next(
            (r for r in huoqiu.json_lines("cert", "pending") if r["request_id"] == request_id), None
        ),
        timeout=60,
        what=f"request {request_id} to reach the issuer",
    )
    return found


def answered(wujiang: NodeProcess, request_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = wait_until(
        lambda: (r := wujiang.json("cert", "show", request_id)["request"])["state"] != "pending" and r,
        timeout=60,
        what=f"the answer to {request_id} at the requester",
    )
    return shown


def grant(huoqiu: NodeProcess, request_id: str) -> dict[str, Any]:
    """The issuing clerk fills in the pension-balance fields and issues."""
    issued: dict[str, Any] = huoqiu.json(
        "cert", "issue", request_id, "--field", "account_balance=38216.45", "--field", "as_of=2026-11-20"
    )
    return issued


def issue(wujiang: NodeProcess, huoqiu: NodeProcess) -> str:
    sent = request(wujiang)
    pending(huoqiu, sent["request_id"])
    issued = grant(huoqiu, sent["request_id"])
    assert answered(wujiang, sent["request_id"])["certificate_id"] == issued["certificate_id"]
    return str(issued["certificate_id"])


def verify(node: NodeProcess, *args: str) -> tuple[int, dict[str, Any]]:
    result = node.cli("cert", "verify", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {
        "stderr": result.stderr
    }


def test_request_preview_issue_get_and_verify_offline(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    sent = request(wujiang)
    assert sent["consent"]["given_by"] == "陈添荣"
    assert sent["consent"]["purpose"] == "养老保险个人账户一次性提取"
    assert sent["consent"]["given_at"]

    waiting = pending(huoqiu, sent["request_id"])
    assert waiting["issuable"] is True
    assert waiting["applicant_id"] == "341522********123X", "lists mask the ID number"
    preview = {f["key"]: f for f in waiting["preview"]}
    assert set(preview) == {"applicant_name", "applicant_id", "account_balance", "as_of"}
    assert preview["account_balance"]["required"]
    assert not preview["account_balance"]["personal"]
    table = huoqiu.cli("cert", "pending").stdout
    assert "城乡居民养老保险个人账户余额证明" in table
    assert "--field account_balance=" in table

    missing = huoqiu.cli("cert", "issue", sent["request_id"], "--field", "account_balance=1.00")
    assert missing.returncode == 1
    assert "needs as_of" in missing.stderr

    issued = grant(huoqiu, sent["request_id"])
    certificate_id = issued["certificate_id"]
    assert answered(wujiang, sent["request_id"])["state"] == "issued"

    pdf, document = tmp_path / "证明.pdf", tmp_path / "cert.json"
    wujiang.json("cert", "get", certificate_id, "-o", str(pdf))
    wujiang.json("cert", "get", certificate_id, "-o", str(document))
    assert pdf.read_bytes().startswith(b"%PDF")
    body = json.loads(document.read_text(encoding="utf-8"))
    assert body["fields"]["account_balance"] == "38216.45"
    assert len(body["qr"]) <= 700

    wujiang.json("cert", "trust", "refresh")
    for args in ((str(pdf),), (str(document),), ("--qr", body["qr"])):
        status, verdict = verify(wujiang, *args)
        assert status == 0, verdict
        assert [c["result"] for c in verdict["checks"]] == ["pass"] * 5
        assert verdict["fields"]["applicant_name"] == "陈添荣"
        assert verdict["claims"]["iss"] == "cn-341522"

    # Read by a clerk, the verdict gives its times in Beijing time, as the rest of the CLI does.
    shown = wujiang.cli("cert", "verify", str(pdf))
    assert shown.returncode == 0, shown.stderr
    beijing = timezone(timedelta(hours=8))
    issued_at = datetime.fromtimestamp(verdict["claims"]["iat"], tz=beijing).strftime("%Y-%m-%d %H:%M:%S")
    [issued_line] = [line for line in shown.stdout.splitlines() if line.lstrip().startswith("issued")]
    assert issued_at in issued_line, issued_line
    assert "Z" not in issued_line, issued_line

    # Offline: with both nodes' processes out of the picture, the cached trust data still verifies.
    trust = wujiang.home / "trust" / "certificates.json"
    copy = tmp_path / "trust.json"
    copy.write_bytes(trust.read_bytes())
    status, _ = verify(wujiang, str(pdf), "--trust", str(copy))
    assert status == 0

    # A holder shows only what a purpose needs.
    partial = tmp_path / "partial.json"
    wujiang.json(
        "cert", "get", certificate_id, "-o", str(partial), "--disclose", "applicant_name,account_balance"
    )
    status, verdict = verify(wujiang, str(partial))
    assert status == 0
    assert set(verdict["fields"]) == {"applicant_name", "account_balance"}

    # A tampered file is refused with its reason.
    forged = tmp_path / "forged.json"
    forged.write_text(
        json.dumps(
            {"token": body["token"].replace(body["token"][40], "A" if body["token"][40] != "A" else "B", 1)}
        )
    )
    status, verdict = verify(wujiang, str(forged))
    assert status == 1
    assert verdict["code"] != "ok"
    garbage = tmp_path / "note.pdf"
    garbage.write_bytes(b"%PDF-1.4 not really")
    status, verdict = verify(wujiang, str(garbage))
    assert (status, verdict["code"]) == (1, "malformed")
    assert [c["result"] for c in verdict["checks"]] == ["fail", "skipped", "skipped", "skipped", "skipped"]


def test_revocation_is_seen_at_the_peer_within_one_refresh(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    certificate_id = issue(wujiang, huoqiu)
    document = tmp_path / "cert.json"
    wujiang.json("cert", "get", certificate_id, "-o", str(document))
    wujiang.json("cert", "trust", "refresh")
    assert verify(wujiang, str(document))[0] == 0

    revoked = huoqiu.json("cert", "revoke", certificate_id, "--reason", "出具后发现账户余额有误")
    assert revoked["state"] == "revoked"
    # The issuer's own trust data knows at once; the peer after its next scheduled refresh.
    assert verify(huoqiu, str(document))[1]["code"] == "revoked"
    verdict = wait_until(
        lambda: (v := verify(wujiang, str(document)))[0] == 1 and v[1],
        timeout=REFRESH_SECONDS * 2 + 10,
        what="the revocation to reach the peer on its scheduled refresh",
    )
    assert verdict["code"] == "revoked"
    again = huoqiu.cli("cert", "reinstate", certificate_id)
    assert again.returncode == 1
    assert "revoked" in again.stderr


def test_suspension_and_reinstatement(pair: tuple[NodeProcess, NodeProcess], tmp_path: Path) -> None:
    wujiang, huoqiu = pair
    certificate_id = issue(wujiang, huoqiu)
    document = tmp_path / "cert.json"
    wujiang.json("cert", "get", certificate_id, "-o", str(document))

    huoqiu.json("cert", "suspend", certificate_id, "--reason", "核查中")
    wujiang.json("cert", "trust", "refresh")
    status, verdict = verify(wujiang, str(document))
    assert (status, verdict["code"]) == (1, "suspended")

    huoqiu.json("cert", "reinstate", certificate_id)
    wujiang.json("cert", "trust", "refresh")
    assert verify(wujiang, str(document))[0] == 0
    shown = huoqiu.json("cert", "show", certificate_id)["certificate"]
    assert shown["state"] == "valid"


def test_certificates_issued_before_a_key_rotation_still_verify(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    before = issue(wujiang, huoqiu)
    rotated = huoqiu.json("keys", "rotate")
    assert "cn-320509" in rotated["peers_told"]
    after = issue(wujiang, huoqiu)
    wujiang.json("cert", "trust", "refresh")
    for certificate_id in (before, after):
        document = tmp_path / f"{certificate_id}.json"
        wujiang.json("cert", "get", certificate_id, "-o", str(document))
        status, verdict = verify(wujiang, str(document))
        assert status == 0, verdict
    kids = {
        sdjwt.parse(json.loads((tmp_path / f"{c}.json").read_text())["token"]).header["kid"]
        for c in (before, after)
    }
    assert len(kids) == 2, "the two certificates were signed by different keys"


def test_a_refused_request_tells_the_requester_why_and_no_certificate_exists(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    sent = request(wujiang, "household-registration-proof")
    pending(huoqiu, sent["request_id"])
    huoqiu.json("cert", "refuse", sent["request_id"], "--reason", "户籍档案中无此人记录")
    seen = answered(wujiang, sent["request_id"])
    assert (seen["state"], seen["reason"], seen["certificate_id"]) == ("refused", "户籍档案中无此人记录", "")
    at_issuer = huoqiu.json("cert", "show", sent["request_id"])
    assert at_issuer["certificate"] is None
    assert at_issuer["request"]["state"] == "refused"
    late = huoqiu.cli("cert", "issue", sent["request_id"])
    assert late.returncode == 1
    assert "already refused" in late.stderr


def test_a_type_the_issuer_does_not_issue_is_rejected_on_arrival(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    wujiang, _ = pair
    sent = request(wujiang, "business-license")
    seen = answered(wujiang, sent["request_id"])
    assert seen["state"] == "rejected"
    assert "does not list certificate type 'business-license'" in seen["reason"]
    not_allowed = answered(wujiang, request(wujiang, "no-criminal-record-proof")["request_id"])
    assert not_allowed["state"] == "rejected"
    assert "cn-320509 may not request no-criminal-record-proof" in not_allowed["reason"]
    wrong_id = wujiang.cli(
        "cert", "request", "--from", "cn-341522", "--type", "pension-balance-proof",
        "--applicant-id", "341522198001011234", "--applicant-name", "陈添荣", "--purpose", "x",
    )  # fmt: skip
    assert wrong_id.returncode == 1
    assert "check character" in wrong_id.stderr
