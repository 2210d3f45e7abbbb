"""What the cases tests share: scans to hand in, valid identifiers, a small federation of real
node processes with catalogs and clerks."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.cases.validate import id_check_character
from tests.utils import ROOT, NodeProcess, launch, peer_processes, wait_until


def resident_id(prefix17: str) -> str:
    return prefix17 + id_check_character(prefix17)


CHEN = resident_id("34152219580101123")  # registered in Huoqiu County


def scan_pdf(text: str = "scan") -> bytes:
    """A real one-page PDF."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, invariant=True)
    page.drawString(72, 720, text)
    page.showPage()
    page.save()
    return buffer.getvalue()


def scan_png(seed: int = 0) -> bytes:
    """A real 8x8 grey PNG."""
    raw = b"".join(b"\x00" + bytes([(seed + x * 16) % 256 for x in range(8)]) for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@dataclass
class Hall:
    """A node process with its catalog imported and one clerk."""

    node: NodeProcess
    clerk: str

    def do(self, *args: str) -> Any:
        return self.node.json(*args, "--clerk", self.clerk)

    def fail(self, *args: str) -> str:
        result = self.node.cli(*args, "--clerk", self.clerk)
        assert result.returncode != 0, f"tongban {' '.join(args)} should have failed:\n{result.stdout}"
        return result.stderr

    def case(self, ref: str) -> Any:
        return self.node.json("case", "show", ref)

    def wait_state(self, ref: str, state: str, timeout: float = 60.0) -> Any:
        return wait_until(
            lambda: (
                (c := self.case(ref))["state"] == state
                and not any(not m["present"] for m in c["materials"])
                and c
            ),
            timeout=timeout,
            what=f"case {ref} to be {state} at {self.node.node_id}",
        )


@dataclass(frozen=True)
class Plan:
    """A hall to open: its node, its clerk, its catalog (its own by default) and settings."""

    node_id: str
    name: str
    clerk: str
    catalog: str | None = None
    config: dict[str, Any] | None = None
    db: str = ""  # a database URL (PostgreSQL); the home's SQLite file when empty


def open_halls(tmp_path: Path, *plans: Plan) -> list[Hall]:
    """Open several halls: their nodes start together, then each imports its catalog and adds its clerk."""
    nodes = launch(
        *(NodeProcess(tmp_path, p.node_id, p.name, db=p.db, config=dict(p.config or {})) for p in plans)
    )
    for node, plan in zip(nodes, plans, strict=True):
        node.json("catalog", "import", str(ROOT / "config" / f"catalog-{plan.catalog or plan.node_id}.toml"))
        node.json("clerk", "add", plan.clerk)
    return [Hall(node, plan.clerk) for node, plan in zip(nodes, plans, strict=True)]


WUJIANG = Plan("cn-320509", "吴江区政务服务中心", "王芳")
HUOQIU = Plan("cn-341522", "霍邱县政务服务中心", "李明")
LUAN = Plan("cn-341500", "六安市政务服务中心", "张伟")


def link(inviter: Hall, joiner: Hall) -> None:
    peer_processes(inviter.node, joiner.node)
    inviter.node.json("peer", "allow", joiner.node.node_id, "*")
    joiner.node.json("peer", "allow", inviter.node.node_id, "*")


def history(view: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (e["event_id"], e["action"], e["node"], e["clerk"], e["at_us"], e["state"], e["holder"], e["reason"])
        for e in view["history"]
    ]


def open_hukou_case(hall: Hall, folder: Path, name: str, id_prefix17: str) -> str:
    """A household-registration proof opened at `hall` (routed by the ID); its case number."""
    number: str = hall.do(
        "case",
        "open",
        "--item",
        "household-registration-proof",
        "--applicant-name",
        name,
        "--applicant-id",
        resident_id(id_prefix17),
        "--material",
        f"id-card={write(folder, 'hukou.pdf', scan_pdf('hukou'))}",
        "--form",
        "purpose=子女入学",
    )["number"]
    return number
