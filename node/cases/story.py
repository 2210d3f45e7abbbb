"""The cases act of `make demo`: the seed's story, as the clerks at each window see it.

Chen Tianrong, registered in Huoqiu County, withdraws his pension-account balance at the
Wujiang window: Wujiang checks the application against Huoqiu's own catalog and forwards it,
Huoqiu asks for one more material, Wujiang adds it, Huoqiu accepts and completes, Wujiang
hands over the result and Chen rates the service. Then a household-registration proof moves
from Huoqiu to Lu'an by transfer, with its history. Scans and the receipt PDF are left in the
demo homes' folder.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from node.cases.validate import id_check_character

if TYPE_CHECKING:
    from node.demo import Demo

WUJIANG, HUOQIU, LUAN = "cn-320509", "cn-341522", "cn-341500"
CLERKS = {WUJIANG: "王芳", HUOQIU: "李明", LUAN: "张伟"}


def _id(prefix17: str) -> str:
    return prefix17 + id_check_character(prefix17)


def _scan(text: str) -> bytes:
    import io

    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if "STSong-Light" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, invariant=True)
    page.setFont("STSong-Light", 20)
    page.drawString(72, 720, f"扫描件：{text}")
    page.showPage()
    page.save()
    return buffer.getvalue()


def _wait(demo: Demo, node: str, number: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = demo.run_json("case", "show", number, node=node)
        if (
            view["state"] == state
            and all(m["present"] for m in view["materials"])
            and not view["transfer_to"]
        ):
            return view
        if time.monotonic() > deadline:
            from node.demo import DemoError

            raise DemoError(f"case {number} did not become {state} at {node} (it is {view['state']})")
        time.sleep(0.3)


def seed_story(demo: Demo) -> None:
    nodes = [n for n in (WUJIANG, HUOQIU, LUAN) if n in demo.nodes]
    if len(nodes) < 3:
        demo.say("(the cases story needs cn-320509, cn-341522 and cn-341500 in the demo file; skipped)")
        return
    from node.demo import ROOT

    demo.act("5. Each hall publishes its service catalog and gives its clerks credentials")
    for node in nodes:
        demo.run("catalog", "import", str(ROOT / "config" / f"catalog-{node}.toml"), node=node)
        demo.run("clerk", "add", CLERKS[node], node=node, show=False)
        demo.say(f"(clerk {CLERKS[node]} now has a token at {demo.nodes[node].name})")
    demo.run("catalog", "show", "--peer", HUOQIU, node=WUJIANG)

    scans = demo.homes / "scans"
    scans.mkdir(exist_ok=True)
    for name, text in (
        ("身份证.pdf", "居民身份证 陈添荣"),
        ("申请表.pdf", "养老保险待遇申请表"),
        ("银行卡.pdf", "社会保障卡"),
    ):
        (scans / name).write_bytes(_scan(text))
    chen = _id("34152219580101123")
    receipt = demo.homes / "受理回执-陈添荣.pdf"

    demo.act("6. Wujiang's cross-region window accepts Chen Tianrong's application for Huoqiu")
    wang = ("--clerk", CLERKS[WUJIANG])
    out = demo.run(
        "case",
        "open",
        "--item",
        "pension-balance-withdrawal",
        "--applicant-name",
        "陈添荣",
        "--applicant-id",
        chen,
        "--phone",
        "13856781234",
        "--material",
        f"id-card={scans / '身份证.pdf'}",
        "--material",
        f"application-form={scans / '申请表.pdf'}",
        "--form",
        "bank_account=6217002870012345678",
        "--form",
        "reason=其他",
        "--receipt-pdf",
        str(receipt),
        *wang,
        node=WUJIANG,
    )
    number = out.split()[1]
    _wait(demo, HUOQIU, number, "received")

    demo.act("7. Huoqiu checks the case and asks, once, for everything missing (一次性告知)")
    li = ("--clerk", CLERKS[HUOQIU])
    demo.run("case", "list", "--inbox", node=HUOQIU)
    demo.run(
        "case",
        "supplement",
        number,
        "--need",
        "bank-card",
        "--note",
        "请补充本人社会保障卡",
        *li,
        node=HUOQIU,
    )
    _wait(demo, WUJIANG, number, "supplement_requested")
    demo.run("case", "material", "add", number, f"bank-card={scans / '银行卡.pdf'}", *wang, node=WUJIANG)
    _wait(demo, HUOQIU, number, "received")

    demo.act("8. Huoqiu accepts and completes; Wujiang hands over the result; Chen rates 5 stars")
    demo.run("case", "accept", number, *li, node=HUOQIU)
    demo.run("case", "complete", number, "--result", "准予一次性提取，款项已转入本人账户", *li, node=HUOQIU)
    _wait(demo, WUJIANG, number, "completed")
    demo.run("case", "deliver", number, *wang, node=WUJIANG)
    demo.run("case", "rate", number, "--stars", "5", "--comment", "十几分钟就办好了", *wang, node=WUJIANG)
    _wait(demo, HUOQIU, number, "closed")
    demo.run("case", "show", number, node=HUOQIU)
    here = demo.run_json("case", "show", number, node=HUOQIU)["history"]
    there = demo.run_json("case", "show", number, node=WUJIANG)["history"]
    same = json.dumps(here, sort_keys=True) == json.dumps(there, sort_keys=True)
    demo.say(f"Both nodes hold the same {len(here)} transitions: {'yes' if same else 'NO'}")
    demo.say(f"The applicant's receipt (受理回执) is at {receipt}")

    demo.act("9. A matter decided at city level moves from Huoqiu to Lu'an by transfer (转办)")
    out = demo.run(
        "case",
        "open",
        "--item",
        "household-registration-proof",
        "--applicant-name",
        "周秀英",
        "--applicant-id",
        _id("34152219700505002"),
        "--material",
        f"id-card={scans / '身份证.pdf'}",
        "--form",
        "purpose=子女入学",
        *wang,
        node=WUJIANG,
    )
    second = out.split()[1]
    _wait(demo, HUOQIU, second, "received")
    demo.run("case", "transfer", second, "--to", LUAN, "--reason", "户籍档案在市局", *li, node=HUOQIU)
    _wait_role(demo, LUAN, second)
    demo.run("case", "transfer-accept", second, "--clerk", CLERKS[LUAN], node=LUAN)
    view = _wait(demo, WUJIANG, second, "received")
    demo.say(f"Wujiang sees the holder now: {view['holder']}")
    demo.run("case", "accept", second, "--clerk", CLERKS[LUAN], node=LUAN)
    demo.run("case", "show", second, node=LUAN)


def _wait_role(demo: Demo, node: str, number: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while demo.run_json("case", "show", number, node=node)["role"] != "offered":
        if time.monotonic() > deadline:
            from node.demo import DemoError

            raise DemoError(f"the transfer offer of {number} did not reach {node}")
        time.sleep(0.3)
