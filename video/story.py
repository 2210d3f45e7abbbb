"""`make demo`'s screen-to-screen act: Wujiang's window calls Huoqiu about a case between them.

Huoqiu's clerk answers and shows the pension-account certificate on screen; the call runs five
seconds of test camera and tone both ways, is recorded for the case file, and both nodes list
it with its figures. It needs a case that Wujiang accepted and Huoqiu holds (the cases story
opens one); without one it says so and does nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.demo import Demo

CALLER, CALLEE = "cn-320509", "cn-341522"


def screen_to_screen(demo: Demo) -> None:
    if CALLER not in demo.nodes or CALLEE not in demo.nodes:
        return
    demo.act("Screen-to-screen: Wujiang's window calls Huoqiu about the case (屏对屏)")
    listed = demo.run("case", "list", "--json", node=CALLER, show=False)
    cases = [json.loads(line) for line in listed.splitlines() if line.strip()]
    case = next((c["number"] for c in cases if c.get("holder") == CALLEE), None)
    if case is None:
        demo.say(f"(no case held by {CALLEE} at {CALLER}: nothing to call about)")
        return
    certificate = demo.homes / "养老保险个人账户余额证明.pdf"
    _certificate(str(certificate))
    demo.say(
        f"$ tongban video answer --auto --share {certificate.name} --home …/{CALLEE}   (Huoqiu's window waits)"
    )
    answering = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "video",
            "answer",
            "--auto",
            "--wait",
            "60",
            "--share",
            str(certificate),
            "--label",
            "霍邱县社保窗口",
            "--home",
            str(demo.nodes[CALLEE].home),
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        demo.run(
            "video", "call", case, "--record", "--duration", "5", "--label", "吴江区跨域通办窗口", node=CALLER
        )
    finally:
        try:
            answering.wait(60)
        except subprocess.TimeoutExpired:
            answering.kill()
    demo.run("video", "calls", node=CALLEE)
    demo.run("video", "recordings", case, node=CALLER)


def _certificate(path: str) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    page = canvas.Canvas(path, pagesize=A4)
    page.setFont("STSong-Light", 22)
    page.drawString(120, 760, "养老保险个人账户余额证明")
    page.setFont("STSong-Light", 14)
    for i, line in enumerate(
        ["姓名：陈*荣", "参保地：霍邱县", "个人账户余额：人民币 ******.** 元", "霍邱县社会保险服务中心（章）"]
    ):
        page.drawString(100, 700 - 30 * i, line)
    page.showPage()
    page.save()
