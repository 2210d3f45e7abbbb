"""One side of a screen-to-screen call: an aiortc peer connection with the window's tracks.

The caller's offer always has three media sections, in this order: sound, camera, share. The
share section lets either clerk show a document or the screen: the caller sends on it when it
shares (else only receives), the callee fills it in its answer when it shares. Sections are
told apart by their order, so the receiving side knows which picture is the camera and which
the document.

The endpoint counts what it sends and receives, notes when the first picture from the other
side arrives (the call's setup time), feeds both directions to a `Recorder` when asked, and
ends the call by itself, with a reason, when the media stops: the other side said goodbye
(RTCP BYE), the connection failed, or nothing arrived for `media_timeout` seconds (the other
process was killed). `figures()` combines its counters with aiortc's RTP statistics.

Media code knows no storage and no signaling: SDP goes in and out as strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from video.ice import IceServer
from video.recorder import Recorder, StreamSpec
from video.sources import Sources
from video.units import Figures

_log = logging.getLogger("tongban.video.endpoint")

SLOTS = ("microphone", "camera", "share")  # the offer's media sections, in order


class ConnectTimeout(Exception):
    """The media did not start within the connect timeout; the message says how far it got."""


@dataclass
class _Flow:
    """Counters of one track, sent or received."""

    frames: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    width: int = 0
    height: int = 0

    def count(self, frame: Any, now: float) -> None:
        self.frames += 1
        if not self.first_at:
            self.first_at = now
        self.last_at = now
        if getattr(frame, "width", 0):
            self.width, self.height = frame.width, frame.height


class _Tap(MediaStreamTrack):
    """Passes a local source's frames to the sender, counting them and showing them to the recorder."""

    def __init__(self, source: MediaStreamTrack, flow: _Flow, on_frame: Callable[[Any], None]) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._flow = flow
        self._on_frame = on_frame

    async def recv(self) -> Any:
        frame = await self._source.recv()
        self._flow.count(frame, time.monotonic())
        self._on_frame(frame)
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


@dataclass
class _Side:
    sent: dict[str, _Flow] = field(default_factory=lambda: {slot: _Flow() for slot in SLOTS})
    received: dict[str, _Flow] = field(default_factory=lambda: {slot: _Flow() for slot in SLOTS})


class Endpoint:
    def __init__(
        self,
        sources: Sources,
        ice_servers: list[IceServer] | None = None,
        *,
        media_timeout: float = 10.0,
    ) -> None:
        self.sources = sources
        self.media_timeout = media_timeout
        servers = [
            RTCIceServer(list(s.urls), s.username or None, s.credential or None) for s in ice_servers or []
        ]
        # An explicit empty list: aiortc would otherwise reach for a public STUN server.
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.started_at = time.monotonic()
        self.answered_at = 0.0
        self.ring_seconds = 0.0
        self.recorder: Recorder | None = None
        self._side = _Side()
        self._first_frame = asyncio.Event()
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expect_video = True
        self._closed = False
        self._stats_cache: Figures | None = None
        self._cpu_at_first_frame = 0.0
        self.failed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # -- negotiation --------------------------------------------------------------------------

    async def offer(self) -> str:
        """The caller's offer (ICE candidates gathered), with sound, camera and share sections."""
        for slot in SLOTS:
            track = self._local(slot)
            if track is not None:
                self.pc.addTransceiver(track, direction="sendrecv")
            else:
                self.pc.addTransceiver("audio" if slot == "microphone" else "video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        """The callee's answer reached the caller."""
        self.answered_at = time.monotonic()
        self.ring_seconds = self.answered_at - self.started_at
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        self._negotiated()

    async def answer(self, offer_sdp: str) -> str:
        """The callee's answer to an offer, with this window's tracks in their sections."""
        self.answered_at = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        transceivers = self.pc.getTransceivers()
        if len(transceivers) != len(SLOTS):
            raise ValueError(
                f"the offer has {len(transceivers)} media sections; a tongban call has {len(SLOTS)}"
            )
        for slot, transceiver in zip(SLOTS, transceivers, strict=True):
            track = self._local(slot)
            if track is not None:
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._negotiated()
        return str(self.pc.localDescription.sdp)

    def _negotiated(self) -> None:
        self._expect_video = self.receives("camera") or self.receives("share")
        self._spawn(self._watch())

    def receives(self, slot: str) -> bool:
        """Whether the other side sends on `slot` (known once negotiated)."""
        return self._direction(slot) in ("sendrecv", "recvonly")

    def sends(self, slot: str) -> bool:
        return self._direction(slot) in ("sendrecv", "sendonly")

    def _direction(self, slot: str) -> str:
        transceivers = self.pc.getTransceivers()
        index = SLOTS.index(slot)
        return (transceivers[index].currentDirection or "") if index < len(transceivers) else ""

    def _local(self, slot: str) -> MediaStreamTrack | None:
        source = getattr(self.sources, slot)
        if source is None:
            return None
        flow = self._side.sent[slot]
        return _Tap(source, flow, lambda frame: self._record(f"local {slot}", frame))

    # -- media --------------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        slot = "microphone" if track.kind == "audio" else "camera"
        for candidate, transceiver in zip(SLOTS, self.pc.getTransceivers(), strict=False):
            if transceiver.receiver.track is track:
                slot = candidate
        self._spawn(self._consume(track, slot))

    async def _consume(self, track: MediaStreamTrack, slot: str) -> None:
        flow = self._side.received[slot]
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            flow.count(frame, time.monotonic())
            if not self._first_frame.is_set() and (track.kind == "video" or not self._expect_video):
                self._cpu_at_first_frame = time.process_time()
                self._first_frame.set()
            self._record(f"remote {slot}", frame)
        if slot == "camera" or (slot == "microphone" and not self._expect_video):
            self.end("the other side stopped sending (it hung up or closed its window)")

    def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            self.end(
                "the media connection failed (no ICE route or DTLS handshake between the windows)",
                failed=True,
            )

    async def _watch(self) -> None:
        """End the call when nothing arrives from the other side for `media_timeout` seconds."""
        while not self._ended.done():
            await asyncio.sleep(0.5)
            if not self._first_frame.is_set():
                continue
            last = max(flow.last_at for flow in self._side.received.values())
            silent = time.monotonic() - last
            if silent > self.media_timeout:
                self.end(
                    f"no media from the other side for {silent:.0f} s (its window or network went away)",
                    failed=True,
                )

    async def connected(self, timeout: float) -> float:
        """Wait for the first picture from the other side; returns the setup time in seconds.

        Raises ConnectTimeout when it does not come within `timeout`, or when the connection
        fails before it does, with how far the connection got.
        """
        waiting: asyncio.Future[Any] = asyncio.ensure_future(self._first_frame.wait())
        ended: asyncio.Future[Any] = self._ended
        await asyncio.wait({waiting, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._first_frame.is_set():
            return self.setup_seconds
        waiting.cancel()
        if self._ended.done():
            raise ConnectTimeout(f"the media did not start: {self._ended.result()}")
        if self.pc.connectionState == "connected":
            raise ConnectTimeout(
                f"no media within {timeout:.0f} s of the answer: the windows are connected, but the "
                "other one sends neither picture nor sound"
            )
        raise ConnectTimeout(
            f"no media within {timeout:.0f} s of the answer (ICE {self.pc.iceConnectionState}, "
            f"connection {self.pc.connectionState}); check that the windows can reach each other "
            "or configure [video] ice_servers"
        )

    @property
    def setup_seconds(self) -> float:
        if not self._first_frame.is_set() or not self.answered_at:
            return 0.0
        firsts = [f.first_at for f in self._side.received.values() if f.first_at]
        return max(0.0, min(firsts) - self.answered_at) if firsts else 0.0

    @property
    def ended(self) -> asyncio.Future[str]:
        """Resolves with the reason when the media ends by itself."""
        return self._ended

    def end(self, reason: str, *, failed: bool = False) -> None:
        """End the call from the media side; `failed` when the media broke rather than stopped."""
        if not self._ended.done():
            self.failed = failed
            self._ended.set_result(reason)

    # -- recording ----------------------------------------------------------------------------

    def record(self, write: Callable[[bytes], None], title: str = "") -> Recorder:
        """Record both directions from now on (call once negotiated)."""
        streams = []
        for slot in SLOTS:
            kind = "audio" if slot == "microphone" else "video"
            size = (960, 720) if slot == "share" else (640, 480)
            fps = 5.0 if slot == "share" else 15.0
            if self.sends(slot) and getattr(self.sources, slot) is not None:
                streams.append(StreamSpec(f"local {slot}", kind, *size, fps))
            if self.receives(slot):
                streams.append(StreamSpec(f"remote {slot}", kind, *size, fps))
        self.recorder = Recorder(streams, write, title=title)
        self.recorder.start()
        return self.recorder

    def _record(self, name: str, frame: Any) -> None:
        if self.recorder is not None:
            self.recorder.submit(name, frame)

    # -- figures ------------------------------------------------------------------------------

    async def figures(self) -> Figures:
        if self._closed and self._stats_cache is not None:
            return self._stats_cache
        sent, received = self._side.sent, self._side.received
        camera = received["camera"]
        now = time.monotonic()
        firsts = [f.first_at for f in received.values() if f.first_at]
        start = min(firsts) if firsts else 0.0
        lasts = [f.last_at for f in received.values() if f.last_at]
        duration = (max(lasts) if self._ended.done() and lasts else now) - start if start else 0.0
        span = camera.last_at - camera.first_at
        figures = Figures(
            setup_seconds=round(self.setup_seconds, 4),
            ring_seconds=round(self.ring_seconds, 4),
            frames_sent=sent["camera"].frames,
            frames_received=camera.frames,
            share_frames_sent=sent["share"].frames,
            share_frames_received=received["share"].frames,
            audio_frames_received=received["microphone"].frames,
            fps_received=round((camera.frames - 1) / span, 2) if span > 0 else 0.0,
            duration_seconds=round(max(0.0, duration), 3),
            width_received=camera.width,
            height_received=camera.height,
            recording_dropped=self.recorder.stats.dropped if self.recorder else 0,
            cpu_seconds=round(time.process_time() - self._cpu_at_first_frame, 3) if start else 0.0,
        )
        with contextlib.suppress(Exception):  # statistics are best effort while things close
            await self._rtp_figures(figures)
        self._stats_cache = figures
        return figures

    async def _rtp_figures(self, figures: Figures) -> None:
        report = await self.pc.getStats()
        lost = received = 0
        rtts: list[float] = []
        bytes_sent = bytes_received = 0
        for stats in report.values():
            if stats.type == "inbound-rtp":
                lost += max(0, stats.packetsLost)
                received += stats.packetsReceived
            elif stats.type == "remote-inbound-rtp" and stats.roundTripTime:
                rtts.append(stats.roundTripTime)
            elif stats.type == "transport":
                bytes_sent += stats.bytesSent
                bytes_received += stats.bytesReceived
        if lost + received:
            figures.packet_loss = round(lost / (lost + received), 4)
        if rtts:
            figures.round_trip_ms = round(1000 * sum(rtts) / len(rtts), 2)
        if figures.duration_seconds > 0:
            figures.bitrate_sent_kbps = round(bytes_sent * 8 / figures.duration_seconds / 1000, 1)
            figures.bitrate_received_kbps = round(bytes_received * 8 / figures.duration_seconds / 1000, 1)

    # -- the end ------------------------------------------------------------------------------

    def stop_sending(self) -> None:
        """Stop this window's sources: nothing more is sent (or counted as sent)."""
        self.sources.stop()

    async def close(self) -> Figures:
        """Hang up the media (RTCP BYE to the other side) and return the final figures."""
        if self._closed:
            return self._stats_cache or Figures()
        figures = await self.figures()
        self._closed = True
        self.end("closed")
        self.sources.stop()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 10)
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
            figures.recording_dropped = self.recorder.stats.dropped
        return figures

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
