"""The certificate act of `make demo`: Huoqiu issues Chen Tianrong's pension-balance proof for
the Wujiang window, Wujiang prints it and verifies it offline, Huoqiu revokes it, and the
revocation reaches Wujiang with its next refresh of the trust data."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from node.demo import ROOT, DemoError

if TYPE_CHECKING:
    from node.demo import Demo

WINDOW, ISSUER = "cn-320509", "cn-341522"


def certificate_story(demo: Demo) -> None:
    if WINDOW not in demo.nodes or ISSUER not in demo.nodes:
        return
    demo.act("Certificates: Huoqiu issues a proof for the applicant at the Wujiang window")
    demo.run("catalog", "import", str(ROOT / "config" / f"catalog-{ISSUER}.toml"), node=ISSUER, show=False)
    demo.run("catalog", "refresh", node=WINDOW, show=False)
    sent = demo.run_json(
        "cert", "request", "--from", ISSUER, "--type", "pension-balance-proof",
        "--applicant-id", "34152219800101123X", "--applicant-name", "陈添荣",
        "--purpose", "养老保险个人账户一次性提取", node=WINDOW,
    )  # fmt: skip
    request_id = sent["request_id"]
    demo.say(f"(Wujiang sent request {request_id} with Chen Tianrong's consent record)")
    deadline = time.monotonic() + 30
    while not any(
        r["request_id"] == request_id
        for r in _lines(demo.run("cert", "pending", "--json", node=ISSUER, show=False))
    ):
        if time.monotonic() > deadline:
            raise DemoError("the certificate request did not reach Huoqiu")
        time.sleep(0.2)
    demo.run("cert", "pending", node=ISSUER)
    issued = demo.run_json(
        "cert",
        "issue",
        request_id,
        "--field",
        "account_balance=38216.45",
        "--field",
        "as_of=2026-11-20",
        node=ISSUER,
    )
    certificate_id = issued["certificate_id"]
    while demo.run_json("cert", "show", request_id, node=WINDOW)["request"]["state"] != "issued":
        if time.monotonic() > deadline:
            raise DemoError("the certificate did not reach Wujiang")
        time.sleep(0.2)
    pdf = demo.homes / "陈添荣-养老保险个人账户余额证明.pdf"
    demo.run("cert", "get", certificate_id, "-o", str(pdf), node=WINDOW)
    demo.run("cert", "trust", "refresh", node=WINDOW)
    demo.run("cert", "verify", str(pdf), node=WINDOW)
    demo.act("Certificates: Huoqiu revokes it; Wujiang sees it at its next refresh")
    demo.run("cert", "revoke", certificate_id, "--reason", "出具后发现账户余额有误", node=ISSUER)
    demo.run("cert", "trust", "refresh", node=WINDOW, show=False)
    demo.say(_verify(demo, str(pdf)))
    demo.say(
        f"The printed certificate stays in {pdf}; its QR code and the attached token carry the same proof."
    )


def _lines(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _verify(demo: Demo, path: str) -> str:
    """`cert verify` of a revoked certificate exits 1; show what it printed rather than fail."""
    import subprocess
    import sys

    home = str(demo.nodes[WINDOW].home)
    demo.say(f"$ tongban cert verify {path} --home {home}")
    done = subprocess.run(
        [sys.executable, "-m", "node", "cert", "verify", path, "--home", home],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 1:
        raise DemoError(f"verifying the revoked certificate exited {done.returncode}: {done.stderr}")
    return done.stdout.rstrip()
