"""Screen-to-screen calls between two real nodes, with the real `tongban video` windows.

Wujiang (cn-320509) opened a pension case that Huoqiu (cn-341522) holds; the Wujiang clerk
calls Huoqiu about it. Each test places its own call on the same pair of nodes.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.cases.support import scan_pdf, write
from tests.utils import wait_until
from tests.video.support import Federation, Window, calls, two_halls_with_a_case, wait_for_call
from video.recorder import summarize

pytestmark = pytest.mark.e2e

FPS = 15


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = two_halls_with_a_case(tmp_path_factory.mktemp("video"))
    try:
        yield federation
    finally:
        federation.stop()


def logged_kinds(database: Path, kind: str) -> list[bytes]:
    """The message log's entries of one kind (read-only, beside the running node)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT record FROM log_entries WHERE kind = ?", (kind,))]


def test_answered_call_carries_both_ways_and_is_recorded_for_the_case_file(fed: Federation) -> None:
    document = write(fed.folder, "证明.pdf", scan_pdf("pension account balance certificate"))
    callee = Window.open(
        fed.huoqiu, "answer", "--auto", "--wait", "90", "--label", "霍邱综合窗口", name="answer"
    )
    caller = Window.open(
        fed.wujiang,
        "call",
        fed.case,
        "--share",
        str(document),
        "--record",
        "--duration",
        "5",
        "--label",
        "吴江跨域通办窗口",
        name="call",
    )
    placed, answered = caller.finish(), callee.finish()
    assert placed["outcome"] == "completed", caller.stderr()
    assert answered["outcome"] == "completed", callee.stderr()
    assert placed["call_id"] == answered["call_id"]
    assert placed["case_number"] == fed.case
    assert answered["end_reason"] == "cn-320509 hung up: the planned 5 s are over"

    a, b = placed["figures"], answered["figures"]
    for figures in (a, b):
        assert figures["frames_sent"] >= 0.9 * FPS * 5
        assert (figures["width_received"], figures["height_received"]) == (640, 480)
        assert 0 < figures["setup_seconds"] < 10
        assert figures["fps_received"] > 0.9 * FPS
        assert figures["bitrate_received_kbps"] > 50
        assert figures["round_trip_ms"] > 0
        assert 0 <= figures["packet_loss"] < 0.1
    assert a["frames_received"] >= 0.9 * b["frames_sent"]
    assert b["frames_received"] >= 0.9 * a["frames_sent"]
    assert a["share_frames_sent"] > 0
    assert b["share_frames_received"] >= 0.9 * a["share_frames_sent"]

    # Both nodes list the call as ended, with the figures their window reported.
    here, there = calls(fed.wujiang)[placed["call_id"]], calls(fed.huoqiu)[placed["call_id"]]
    assert (here["direction"], there["direction"]) == ("out", "in")
    assert (here["outcome"], there["outcome"]) == ("completed", "completed")
    assert here["figures"]["frames_received"] == a["frames_received"]
    assert there["figures"]["frames_received"] == b["frames_received"]

    # The recording: in the case file, its SHA-256 in the message log, readable with PyAV.
    recording = placed["recording"]
    assert recording["complete"]
    listed = fed.wujiang.node.json_lines("video", "recordings", fed.case)
    assert recording["sha256"] in [r["sha256"] for r in listed]
    assert any(
        recording["sha256"].encode() in record
        for record in logged_kinds(fed.wujiang.node.database(), "video.recording")
    )
    exported = fed.folder / "call.mkv"
    fed.wujiang.node.json("video", "export", placed["call_id"], "-o", str(exported))
    assert hashlib.sha256(exported.read_bytes()).hexdigest() == recording["sha256"]

    summary = summarize(exported)
    assert summary.readable
    assert not summary.problem
    assert abs(summary.duration_seconds - a["duration_seconds"]) < 1.5
    remote, local = summary.stream("remote camera"), summary.stream("local camera")
    assert remote is not None
    assert local is not None
    assert 0.9 * a["frames_received"] <= remote.frames <= a["frames_received"]
    assert local.frames >= 0.9 * a["frames_sent"]
    assert (remote.width, remote.height) == (640, 480)
    shared = summary.stream("local share")
    assert shared is not None
    assert shared.frames > 0
    assert {"local microphone", "remote microphone"} <= {s.name for s in summary.streams}
    with av.open(str(exported)) as container:
        stream = next(s for s in container.streams.video if s.metadata.get("title") == "remote camera")
        frame = next(container.decode(stream))
        assert (frame.width, frame.height) == (640, 480)


def test_declined_call_tells_the_caller_why(fed: Federation) -> None:
    caller = Window.open(fed.wujiang, "call", fed.case, name="declined")
    ringing = wait_for_call(
        fed.huoqiu, lambda c: c["state"] == "ringing", "the call to ring at Huoqiu", timeout=60
    )
    assert ringing["case_number"] == fed.case
    fed.huoqiu.node.json("video", "decline", ringing["call_id"], "--reason", "窗口正忙，请稍后再拨")
    result = caller.finish()
    assert caller.process.returncode == 1
    assert result["outcome"] == "declined"
    assert "窗口正忙" in result["reason"]
    assert calls(fed.huoqiu)[ringing["call_id"]]["outcome"] == "declined"


def test_unanswered_call_stops_ringing_after_the_ring_timeout(fed: Federation) -> None:
    caller = Window.open(fed.wujiang, "call", fed.case, name="unanswered")
    result = caller.finish()
    assert result["outcome"] == "missed", caller.stderr()
    assert result["reason"] == "nobody answered within 8 s"
    there = wait_until(
        lambda: (c := calls(fed.huoqiu).get(result["call_id"])) and c["state"] == "ended" and c,
        what="Huoqiu to stop ringing",
    )
    assert there["outcome"] == "missed"
    assert "nobody answered" in there["end_reason"]


def test_remote_hang_up_ends_the_call_at_the_caller(fed: Federation) -> None:
    callee = Window.open(fed.huoqiu, "answer", "--auto", "--wait", "90", "--duration", "3", name="hangs-up")
    caller = Window.open(fed.wujiang, "call", fed.case, name="hung-up-on")
    answered, placed = callee.finish(), caller.finish()
    assert answered["outcome"] == "completed", callee.stderr()
    assert placed["outcome"] == "completed", caller.stderr()
    assert placed["reason"] == "cn-341522 hung up: the planned 3 s are over"
    assert placed["ended_here"] is False
    assert placed["figures"]["frames_received"] >= 0.9 * answered["figures"]["frames_sent"]


def test_caller_killed_mid_call_leaves_a_readable_recording_and_the_callee_ends_alone(
    fed: Federation,
) -> None:
    callee = Window.open(fed.huoqiu, "answer", "--auto", "--wait", "90", name="survivor")
    caller = Window.open(fed.wujiang, "call", fed.case, "--record", name="killed")
    active = wait_for_call(
        fed.huoqiu,
        lambda c: c["state"] == "active" and (c["figures"] or {}).get("frames_received", 0) >= 4 * FPS,
        "four seconds of media at Huoqiu",
    )
    caller.kill()
    answered = callee.finish(timeout=90)
    assert answered["call_id"] == active["call_id"]
    assert answered["outcome"] in ("failed", "completed")
    assert any(
        why in answered["reason"] for why in ("went away", "stopped sending", "no media from the other side")
    ), answered["reason"]

    # Wujiang's node ended the call itself, and kept what the recording had reached.
    here = wait_until(
        lambda: (c := calls(fed.wujiang)[active["call_id"]])["state"] == "ended" and c,
        what="Wujiang to end the call of its killed window",
    )
    assert "went away" in here["end_reason"]
    recording = wait_until(
        lambda: next(
            (
                r
                for r in fed.wujiang.node.json_lines("video", "recordings", fed.case)
                if r["call_id"] == active["call_id"]
            ),
            None,
        ),
        what="the cut-off recording to be sealed",
    )
    assert recording["complete"] is False
    exported = fed.folder / "cut-off.mkv"
    fed.wujiang.node.json("video", "export", active["call_id"], "-o", str(exported))
    summary = summarize(exported)
    assert summary.readable
    media_seconds = active["figures"]["duration_seconds"]
    assert summary.duration_seconds >= media_seconds - 3.0
    remote = summary.stream("remote camera")
    assert remote is not None
    assert remote.frames >= (media_seconds - 3.0) * FPS * 0.9


def test_call_without_media_from_the_other_side_fails_after_the_connect_timeout(fed: Federation) -> None:
    callee = Window.open(
        fed.huoqiu, "answer", "--auto", "--wait", "90", "--camera", "none", "--mic", "none", name="mute"
    )
    caller = Window.open(fed.wujiang, "call", fed.case, name="to-mute")
    placed, answered = caller.finish(), callee.finish()
    assert caller.process.returncode == 1
    assert placed["outcome"] == "failed", caller.stderr()
    assert placed["reason"] == (
        "no media within 10 s of the answer: the windows are connected, "
        "but the other one sends neither picture nor sound"
    )
    assert answered["outcome"] == "failed"
    assert answered["reason"].startswith("cn-320509 hung up: no media within 10 s")
    assert calls(fed.huoqiu)[placed["call_id"]]["outcome"] == "failed"


def test_ctrl_c_hangs_up_and_the_other_window_learns_why(fed: Federation) -> None:
    callee = Window.open(fed.huoqiu, "answer", "--auto", "--wait", "90", name="told")
    caller = Window.open(fed.wujiang, "call", fed.case, name="interrupted")
    wait_for_call(
        fed.wujiang,
        lambda c: c["state"] == "active" and (c["figures"] or {}).get("frames_received", 0) >= 2 * FPS,
        "two seconds of media at Wujiang",
    )
    caller.process.send_signal(signal.SIGINT)
    placed, answered = caller.finish(), callee.finish()
    assert placed["outcome"] == "completed", caller.stderr()
    assert placed["reason"] == "hung up (Ctrl-C)"
    assert answered["reason"] == "cn-320509 hung up: hung up (Ctrl-C)"
    assert answered["figures"]["frames_received"] >= 0.9 * placed["figures"]["frames_sent"]


def test_with_the_callers_node_and_window_killed_the_callee_ends_alone_and_the_node_cleans_up(
    fed: Federation,
) -> None:
    callee = Window.open(fed.huoqiu, "answer", "--auto", "--wait", "90", name="alone")
    caller = Window.open(fed.wujiang, "call", fed.case, name="gone-with-its-node")
    active = wait_for_call(
        fed.huoqiu,
        lambda c: c["state"] == "active" and (c["figures"] or {}).get("frames_received", 0) >= 2 * FPS,
        "two seconds of media at Huoqiu",
    )
    # Both at once: the window gets no chance to say goodbye, the node none to hang up for it.
    caller.kill()
    fed.wujiang.node.kill()
    try:
        answered = callee.finish(timeout=90)
        assert answered["call_id"] == active["call_id"]
        assert answered["outcome"] == "failed"
        assert any(why in answered["reason"] for why in ("no media from the other side for", "went away")), (
            answered["reason"]
        )
        assert calls(fed.huoqiu)[active["call_id"]]["outcome"] == "failed"
    finally:
        fed.wujiang.node.start()
    here = calls(fed.wujiang)[active["call_id"]]
    assert here["state"] == "ended"
    assert "restarted" in here["end_reason"] or "went away" in here["end_reason"]


def test_calls_about_cases_the_caller_cannot_ring_are_refused_with_a_reason(fed: Federation) -> None:
    unknown = fed.wujiang.node.cli("video", "call", "320509-20991231-999999")
    assert unknown.returncode == 1
    assert "knows no case 320509-20991231-999999" in unknown.stderr
    own = fed.huoqiu.node.cli("video", "call", fed.case)
    assert own.returncode == 1
    assert f"holds case {fed.case} itself" in own.stderr
    nothing = fed.huoqiu.node.cli("video", "answer")
    assert nothing.returncode == 1
    assert "no call is ringing" in nothing.stderr
