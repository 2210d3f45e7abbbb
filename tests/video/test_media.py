"""The media parts on their own: headless sources, shared documents, ICE settings, the recorder."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig, NodeSection
from tests.cases.support import scan_pdf
from tests.utils import eventually
from video.endpoint import ConnectTimeout, Endpoint
from video.ice import IceConfigError, IceServer, parse_ice_servers
from video.recorder import Recorder, StreamSpec, summarize
from video.sources import (
    SHARE_BOX,
    DocumentTrack,
    SourceError,
    Sources,
    TestCamera,
    TestTone,
    caption_clock,
    open_camera,
    open_share,
)


async def test_test_camera_sends_a_moving_picture_at_its_frame_rate() -> None:
    camera = TestCamera(640, 480, fps=15)
    started = time.monotonic()
    frames = [await camera.recv() for _ in range(16)]
    elapsed = time.monotonic() - started
    assert {(f.width, f.height) for f in frames} == {(640, 480)}
    assert [f.pts for f in frames] == [round(i * 90_000 / 15) for i in range(16)]
    assert elapsed >= 0.9, "15 frames after the first take a second"
    first, later = frames[0].to_image(), frames[8].to_image()
    assert first.tobytes() != later.tobytes(), "the pattern moves"


def test_the_test_camera_shows_beijing_time_whatever_the_machine_keeps() -> None:
    assert caption_clock(datetime(2026, 12, 1, 16, 0, 1, 250_000, tzinfo=UTC)) == "00:00:01.250"
    assert caption_clock(datetime(2026, 12, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5)))) == "22:30:00.000"


async def test_test_tone_is_20_ms_frames_of_48_khz_sound() -> None:
    tone = TestTone()
    frame = await tone.recv()
    assert (frame.sample_rate, frame.samples, frame.layout.name) == (48_000, 960, "mono")
    assert (
        max(
            abs(int.from_bytes(bytes(frame.planes[0])[i : i + 2], "little", signed=True))
            for i in range(0, 1920, 2)
        )
        > 3000
    )


async def test_a_pdf_page_is_shared_within_the_share_box(tmp_path: Path) -> None:
    pdf = tmp_path / "证明.pdf"
    pdf.write_bytes(scan_pdf("养老保险个人账户余额证明"))
    track = DocumentTrack.open(pdf)
    frame = await track.recv()
    assert frame.width <= SHARE_BOX[0]
    assert frame.height <= SHARE_BOX[1]
    assert max(frame.width, frame.height) >= 700, "legible, not a thumbnail"
    with pytest.raises(SourceError, match="has 1 pages"):
        DocumentTrack.open(pdf, page=2)


def test_sources_that_cannot_be_opened_say_what_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(SourceError, match=r"needs an X display.*--share FILE.pdf"):
        open_share("screen")
    renamed = tmp_path / "notes.pdf"
    renamed.write_text("not a document")
    with pytest.raises(SourceError, match="neither a PDF nor an image"):
        open_share(str(renamed))
    with pytest.raises(SourceError, match="use --camera test"):
        open_camera("/dev/video99")


def test_ice_servers_are_checked_with_a_way_out() -> None:
    assert parse_ice_servers([]) == []
    assert parse_ice_servers(
        [
            "stun:stun.example.gov.cn:3478",
            {"urls": "turn:turn.example.gov.cn:3478", "username": "w", "credential": "s"},
        ]
    ) == [
        IceServer(("stun:stun.example.gov.cn:3478",)),
        IceServer(("turn:turn.example.gov.cn:3478",), "w", "s"),
    ]
    with pytest.raises(IceConfigError, match="not a STUN or TURN URL"):
        parse_ice_servers(["stun.example.gov.cn"])
    with pytest.raises(IceConfigError, match="needs username and credential"):
        parse_ice_servers([{"urls": "turn:turn.example.gov.cn:3478"}])
    config = NodeConfig(node=NodeSection(id="cn-320509", name="吴江"))
    config.video.ice_servers = ["http://stun.example.gov.cn"]
    with pytest.raises(ConfigError, match=r"video\.ice_servers entry 1"):
        config.validate()


async def test_a_recording_is_readable_while_it_is_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "call.mkv"
    with path.open("wb") as sink:

        def write(data: bytes) -> None:
            sink.write(data)
            sink.flush()

        recorder = Recorder(
            [StreamSpec("local camera", "video"), StreamSpec("local microphone", "audio")], write
        )
        recorder.start()
        camera, tone = TestCamera(), TestTone()

        async def feed(track, name: str, count: int) -> None:
            for _ in range(count):
                recorder.submit(name, await track.recv())

        await asyncio.gather(feed(camera, "local camera", 45), feed(tone, "local microphone", 150))

        async def readable_midway() -> object:
            found = await asyncio.to_thread(summarize, path)  # no trailer yet: as after a kill -9
            enough = found.readable and found.duration_seconds >= 2.0
            return found if enough and found.stream("local camera").frames >= 30 else None

        # The encoder thread writes behind the frames submitted: wait for it, not for a while.
        await eventually(readable_midway, what="two seconds of the call to be readable while it is written")
        stats = await asyncio.to_thread(recorder.close)
    final = summarize(path)
    assert stats.frames == {"local camera": 45, "local microphone": 150}
    assert stats.dropped == 0
    assert final.stream("local camera").frames == 45
    assert 2.7 <= final.duration_seconds <= 3.5


def _without_candidates(sdp: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=candidate"))


async def test_a_call_that_cannot_connect_ends_with_a_reason_and_never_hangs() -> None:
    caller = Endpoint(Sources(TestCamera(), None, None))
    callee = Endpoint(Sources(TestCamera(), None, None))
    try:
        offer = await caller.offer()
        answer = await callee.answer(_without_candidates(offer))
        await caller.accept(_without_candidates(answer))
        started = time.monotonic()
        with pytest.raises(ConnectTimeout, match=r"the media did not start|no media within 3 s"):
            await caller.connected(3)
        assert time.monotonic() - started < 3.5
    finally:
        await caller.close()
        await callee.close()
    assert (await caller.figures()).frames_received == 0
