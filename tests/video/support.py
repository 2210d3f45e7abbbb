"""What the video tests share: two real halls with a case between them, and windows (the real
`tongban video call` / `video answer` processes) to call with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.cases.support import CHEN, HUOQIU, WUJIANG, Hall, link, open_halls, scan_pdf, write
from tests.utils import ROOT, TONGBAN, wait_until

# Short timeouts so that the drills run in seconds, not minutes.
VIDEO_CONFIG = {
    "video.ring_timeout_seconds": 8.0,
    "video.connect_timeout_seconds": 10.0,
    "video.media_timeout_seconds": 6.0,
}


@dataclass
class Federation:
    wujiang: Hall
    huoqiu: Hall
    case: str  # the case number: opened at Wujiang, held by Huoqiu
    folder: Path

    def stop(self) -> None:
        for h in (self.wujiang, self.huoqiu):
            if h.node.running:
                h.node.stop()


def two_halls_with_a_case(folder: Path) -> Federation:
    wujiang, huoqiu = open_halls(
        folder, replace(WUJIANG, config=VIDEO_CONFIG), replace(HUOQIU, config=VIDEO_CONFIG)
    )
    link(huoqiu, wujiang)
    id_card = write(folder, "身份证.pdf", scan_pdf("ID card"))
    form = write(folder, "申请表.pdf", scan_pdf("application"))
    opened = wujiang.do(
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
    huoqiu.wait_state(opened["number"], "received")
    return Federation(wujiang, huoqiu, opened["number"], folder)


@dataclass
class Window:
    """A running `tongban video call` or `video answer` process (the media endpoint)."""

    args: list[str]
    process: subprocess.Popen[str]
    log: Path
    result: dict[str, Any] | None = field(default=None)

    @classmethod
    def open(cls, node: Hall, *args: str, name: str) -> Window:
        argv = ["video", *args, "--home", str(node.node.home), "--json"]
        log = node.node.root / f"{name}.stderr"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [*TONGBAN, *argv],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return cls(argv, process, log)

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for the window to end; its --json document."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
            raise AssertionError(f"tongban {' '.join(self.args)} did not end:\n{self.stderr()}") from None
        if not out.strip():
            raise AssertionError(
                f"tongban {' '.join(self.args)} exited {self.process.returncode} without a result:\n{self.stderr()}"
            )
        self.result = json.loads(out)
        return self.result

    def kill(self) -> None:
        """kill -9."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def calls(node: Hall) -> dict[str, dict[str, Any]]:
    return {c["call_id"]: c for c in node.node.json_lines("video", "calls")}


def wait_for_call(node: Hall, predicate: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: next((c for c in calls(node).values() if predicate(c)), None), timeout=timeout, what=what
    )
