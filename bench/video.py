"""bench/video.py: how long a screen-to-screen call takes to show the first picture, and its CPU.

Measured: two real node processes on loopback with a case between them (opened at Wujiang,
held by Huoqiu), the real `tongban video answer --auto` and `tongban video call` processes, 640x480
at 15 fps both ways. Setup is from the caller's first step (making its offer) to the first
picture from the other window, through the federation: offer, invite through Wujiang's node,
Huoqiu's node, the answering window, the answer back, ICE, DTLS, the first key frame. CPU is each
window's own process time while media flowed, per second of call.

Baseline, in the same run: a bare aiortc pair in this process (two RTCPeerConnections, the same
test camera and tone), from the offer to the first picture; its CPU per call-second per end.

The last line prints the ratio of the setup times (target: at most 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from node.cases.validate import id_check_character  # noqa: E402
from video.sources import TestCamera, TestTone  # noqa: E402

TONGBAN = [sys.executable, "-m", "node"]


# -- the baseline: a bare aiortc pair ---------------------------------------------------------


async def bare_call(seconds: float) -> tuple[float, float]:
    """(setup seconds, CPU seconds per call-second per end) of one bare in-process call."""
    started = time.monotonic()
    caller, callee = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    first = asyncio.Event()
    frames = 0
    cpu_at_first = 0.0

    async def consume(track: Any) -> None:
        nonlocal frames, cpu_at_first
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video" and not first.is_set():
                cpu_at_first = time.process_time()
                first.set()
            frames += 1

    tasks: list[asyncio.Task[Any]] = []
    caller.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    callee.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    for pc in (caller, callee):
        pc.addTrack(TestTone())
        pc.addTrack(TestCamera(640, 480, 15))
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(caller.localDescription)
    await callee.setLocalDescription(await callee.createAnswer())
    await caller.setRemoteDescription(callee.localDescription)
    await asyncio.wait_for(first.wait(), 60)
    setup = time.monotonic() - started
    media_started = time.monotonic()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_at_first
    duration = time.monotonic() - media_started
    for pc in (caller, callee):
        await pc.close()
    for task in tasks:
        task.cancel()
    return setup, cpu / duration / 2


# -- through the federation -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tongban(*args: str, home: Path) -> Any:
    done = subprocess.run(
        [*TONGBAN, *args, "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"tongban {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout) if done.stdout.strip() else None


class Hall:
    def __init__(self, root: Path, node_id: str, name: str) -> None:
        self.node_id, self.home = node_id, root / node_id
        tongban(
            "init",
            "--node-id",
            node_id,
            "--name",
            name,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--api",
            f"127.0.0.1:{free_port()}",
            "--metrics",
            "",
            home=self.home,
        )
        self.log = (root / f"{node_id}.log").open("wb")
        self.process = subprocess.Popen(
            [*TONGBAN, "serve", "--home", str(self.home), "--json"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(
            [*TONGBAN, "status", "--home", str(self.home)], capture_output=True, check=False
        ).returncode:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"{node_id} did not start; see {root}")
            time.sleep(0.2)
        tongban("catalog", "import", str(ROOT / "config" / f"catalog-{node_id}.toml"), home=self.home)
        tongban("clerk", "add", "bench", home=self.home)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def window(hall: Hall, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TONGBAN, "video", *args, "--home", str(hall.home), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


def federated_call(wujiang: Hall, huoqiu: Hall, case: str, seconds: float) -> tuple[float, float, float]:
    """(setup seconds, caller CPU per call-second, callee CPU per call-second)."""
    answering = window(huoqiu, "answer", "--auto", "--wait", "120")
    calling = window(wujiang, "call", case, "--duration", str(seconds))
    placed = json.loads(calling.communicate(timeout=180)[0])
    answered = json.loads(answering.communicate(timeout=180)[0])
    if placed["outcome"] != "completed":
        raise SystemExit(f"the call did not complete: {placed['reason']}")
    a, b = placed["figures"], answered["figures"]
    if os.environ.get("BENCH_VERBOSE"):
        print(
            f"  ring {a['ring_seconds']:.3f} setup {a['setup_seconds']:.3f} callee setup {b['setup_seconds']:.3f}"
        )
    return (
        a["ring_seconds"] + a["setup_seconds"],
        a["cpu_seconds"] / a["duration_seconds"],
        b["cpu_seconds"] / b["duration_seconds"],
    )


def open_case(wujiang: Hall, huoqiu: Hall, folder: Path) -> str:
    from reportlab.pdfgen import canvas

    scan = folder / "scan.pdf"
    page = canvas.Canvas(str(scan))
    page.drawString(72, 720, "scan")
    page.save()
    prefix = "34152219580101123"
    opened = tongban(
        "case",
        "open",
        "--item",
        "pension-balance-withdrawal",
        "--applicant-name",
        "陈添荣",
        "--applicant-id",
        prefix + id_check_character(prefix),
        "--material",
        f"id-card={scan}",
        "--material",
        f"application-form={scan}",
        "--form",
        "bank_account=6222021234567890123",
        "--form",
        "reason=其他",
        "--clerk",
        "bench",
        home=wujiang.home,
    )
    number = str(opened["number"])
    deadline = time.monotonic() + 60
    while tongban("case", "show", number, home=huoqiu.home)["state"] != "received":
        if time.monotonic() > deadline:
            raise SystemExit("the case did not reach Huoqiu")
        time.sleep(0.2)
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, help="calls of each kind")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of media per call")
    args = parser.parse_args()

    bare = [asyncio.run(bare_call(args.seconds)) for _ in range(args.calls)]
    bare_setup = statistics.median(s for s, _ in bare)
    bare_cpu = statistics.median(c for _, c in bare)
    print(
        f"bare aiortc pair:   setup {bare_setup * 1000:7.1f} ms (median of {args.calls}), CPU {bare_cpu:.3f} s per call-second per end"
    )

    folder = Path(tempfile.mkdtemp(prefix="tongban-bench-video-"))
    os.umask(0o077)
    wujiang = Hall(folder, "cn-320509", "吴江区政务服务中心")
    huoqiu = Hall(folder, "cn-341522", "霍邱县政务服务中心")
    try:
        invite = tongban("peer", "invite", home=huoqiu.home)
        tongban("peer", "join", invite["token"], home=wujiang.home)
        tongban("peer", "allow", "cn-320509", "*", home=huoqiu.home)
        tongban("peer", "allow", "cn-341522", "*", home=wujiang.home)
        case = open_case(wujiang, huoqiu, folder)
        federated = [federated_call(wujiang, huoqiu, case, args.seconds) for _ in range(args.calls)]
    finally:
        wujiang.stop()
        huoqiu.stop()
        shutil.rmtree(folder, ignore_errors=True)
    setup = statistics.median(s for s, _, _ in federated)
    caller_cpu = statistics.median(c for _, c, _ in federated)
    callee_cpu = statistics.median(c for _, _, c in federated)
    print(
        f"through federation: setup {setup * 1000:7.1f} ms (median of {args.calls}), CPU {caller_cpu:.3f} s per "
        f"call-second at the caller, {callee_cpu:.3f} at the callee"
    )
    print(
        f"ratio: setup {setup / bare_setup:.2f}x the bare aiortc pair (target <= 3); CPU "
        f"{caller_cpu / bare_cpu:.2f}x (caller), {callee_cpu / bare_cpu:.2f}x (callee)"
    )


if __name__ == "__main__":
    main()
