"""Recording a call, both directions, into one Matroska stream that survives a crash.

The endpoint hands every frame it sends and receives to `Recorder.submit` (on the event loop,
never blocking: a bounded queue, frames beyond it are dropped and counted). One thread encodes
(H.264 for pictures, Opus for sound) and muxes into Matroska in live mode: small clusters (one
second), each written out as soon as it is complete, and no index at the end to go back and
fix. What has been written is a playable file at every moment, so a recording cut off by
`kill -9` is readable up to its last cluster.

The recorder knows no storage: it writes bytes to a callable (the endpoint streams them to its
node, which keeps them in the case file). `summarize` reads a recording back (demuxing only)
for its duration and frame counts.
"""

from __future__ import annotations

import contextlib
import fractions
import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import av
from av.video.reformatter import VideoReformatter

from video.units import RecordingSummary, StreamSummary

_log = logging.getLogger("tongban.video.recorder")

CONTAINER = "matroska"
MS = fractions.Fraction(1, 1000)
AUDIO_RATE = 48_000
AUDIO_FRAME = 960


@dataclass(frozen=True)
class StreamSpec:
    """One stream of the recording: `name` says whose and what ("remote camera")."""

    name: str
    kind: str  # video | audio
    width: int = 640
    height: int = 480
    fps: float = 15.0


@dataclass
class RecorderStats:
    frames: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    bytes_written: int = 0
    error: str = ""


class _Sink(io.RawIOBase):
    """The file object PyAV writes to: hands every write to the recorder's `write` callable."""

    def __init__(self, write: Callable[[bytes], None], stats: RecorderStats) -> None:
        self._write = write
        self._stats = stats

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._write(chunk)
        self._stats.bytes_written += len(chunk)
        return len(chunk)


_STOP = object()


class Recorder:
    """Encodes submitted frames in a thread and writes a live Matroska stream to `write`."""

    def __init__(
        self,
        streams: list[StreamSpec],
        write: Callable[[bytes], None],
        *,
        cluster_ms: int = 1000,
        max_queue: int = 240,
        title: str = "",
    ) -> None:
        if not streams:
            raise ValueError("a recording needs at least one stream")
        self.specs = {spec.name: spec for spec in streams}
        self.stats = RecorderStats(frames={spec.name: 0 for spec in streams})
        self._write = write
        self._cluster_ms = cluster_ms
        self._title = title
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._t0 = 0.0
        self._closed = False

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def submit(self, name: str, frame: av.VideoFrame | av.AudioFrame) -> None:
        """Queue a frame of stream `name` (from the event loop; never waits)."""
        if self._closed or name not in self.specs:
            return
        try:
            self._queue.put_nowait((name, time.monotonic() - self._t0, frame))
        except queue.Full:
            self.stats.dropped += 1

    def close(self, timeout: float = 30.0) -> RecorderStats:
        """Encode what is queued, end the file, and wait for the thread (blocking: use a thread)."""
        if not self._closed:
            self._closed = True
            if self._thread.is_alive():
                self._queue.put(_STOP)
                self._thread.join(timeout)
        return self.stats

    # -- the recording thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            container = av.open(
                _Sink(self._write, self.stats),
                mode="w",
                format=CONTAINER,
                options={"live": "1", "cluster_time_limit": str(self._cluster_ms)},
                container_options={"flush_packets": "1"},
            )
        except Exception as error:  # a recorder that cannot start must not take the call down
            self.stats.error = f"cannot start the recording: {error}"
            _log.exception("recording did not start")
            self._drain()
            return
        if self._title:
            container.metadata["title"] = self._title
        encoders = {name: _encoder(container, spec) for name, spec in self.specs.items()}
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                name, at, frame = item
                encoder = encoders[name]
                for packet in encoder.encode(frame, at):
                    container.mux(packet)
                self.stats.frames[name] += 1
            for encoder in encoders.values():
                for packet in encoder.flush():
                    container.mux(packet)
        except Exception as error:
            self.stats.error = f"recording stopped: {error}"
            _log.exception("recording failed")
        finally:
            with contextlib.suppress(Exception):
                container.close()
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _VideoEncoder:
    def __init__(self, container: Any, spec: StreamSpec) -> None:
        stream = container.add_stream(
            "libx264",
            rate=round(spec.fps),
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "crf": "28",
                "g": str(round(spec.fps * 2)),
            },
        )
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = MS
        stream.time_base = MS
        stream.metadata["title"] = spec.name
        self.stream = stream
        self.spec = spec
        self._last_pts = -1
        # Our own scaler: a frame's built-in one is shared with whoever else reformats that frame
        # (aiortc's encoder, in another thread), and scalers are not safe across threads.
        self._scaler = VideoReformatter()

    def encode(self, frame: av.VideoFrame, at: float) -> list[Any]:
        size = {"width": self.spec.width, "height": self.spec.height}
        picture = self._scaler.reformat(frame, format="yuv420p", **size)
        if picture is frame:  # already in shape: still never touch the sender's frame
            picture = self._scaler.reformat(self._scaler.reformat(frame, format="nv12"), format="yuv420p")
        pts = max(self._last_pts + 1, round(at * 1000))
        self._last_pts = pts
        picture.pts = pts
        picture.time_base = MS
        picture.pict_type = av.video.frame.PictureType.NONE
        return list(self.stream.encode(picture))

    def flush(self) -> list[Any]:
        return list(self.stream.encode(None))


class _AudioEncoder:
    def __init__(self, container: Any, spec: StreamSpec) -> None:
        stream = container.add_stream("libopus", rate=AUDIO_RATE, layout="mono")
        stream.metadata["title"] = spec.name
        self.stream = stream
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=AUDIO_RATE, frame_size=AUDIO_FRAME
        )
        self._next = 0

    def encode(self, frame: av.AudioFrame, at: float) -> list[Any]:
        # Keep sound in step with pictures: after a gap, continue at the wall-clock position.
        self._next = max(self._next, round(at * AUDIO_RATE) - 2 * AUDIO_FRAME)
        packets: list[Any] = []
        for chunk in self._resampler.resample(frame):
            chunk.pts = self._next
            chunk.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._next += chunk.samples
            packets.extend(self.stream.encode(chunk))
        return packets

    def flush(self) -> list[Any]:
        return list(self.stream.encode(None))


def _encoder(container: Any, spec: StreamSpec) -> _VideoEncoder | _AudioEncoder:
    return _VideoEncoder(container, spec) if spec.kind == "video" else _AudioEncoder(container, spec)


# -- reading a recording back ----------------------------------------------------------------


def summarize(source: Path | IO[bytes]) -> RecordingSummary:
    """Duration and packets per stream of a recording, reading it to its end (no decoding).

    A recording cut off mid-cluster reads up to the cut; what was read is reported, with the
    problem that stopped the reading.
    """
    try:
        container = av.open(str(source) if isinstance(source, Path) else source, mode="r")
    except Exception as error:
        return RecordingSummary(0.0, (), readable=False, problem=str(error))
    problem = ""
    with container:
        streams = list(container.streams)
        counts = {s.index: 0 for s in streams}
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        try:
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                at = float(packet.pts * packet.time_base)
                end = at + float((packet.duration or 0) * packet.time_base)
                counts[packet.stream.index] += 1
                first.setdefault(packet.stream.index, at)
                last[packet.stream.index] = max(last.get(packet.stream.index, 0.0), end)
        except Exception as error:  # a truncated tail: keep what was read
            problem = str(error)
        summaries = []
        for s in streams:
            kind = s.type
            summaries.append(
                StreamSummary(
                    name=str(s.metadata.get("title") or s.metadata.get("TITLE") or f"stream {s.index}"),
                    kind=kind,
                    frames=counts[s.index],
                    duration_seconds=round(last.get(s.index, 0.0) - first.get(s.index, 0.0), 3),
                    width=int(getattr(s.codec_context, "width", 0) or 0) if kind == "video" else 0,
                    height=int(getattr(s.codec_context, "height", 0) or 0) if kind == "video" else 0,
                )
            )
    start = min(first.values(), default=0.0)
    end = max(last.values(), default=0.0)
    return RecordingSummary(round(max(0.0, end - start), 3), tuple(summaries), problem=problem)
