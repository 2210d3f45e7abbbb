"""What a window sends: camera, microphone and a shared document or screen, as aiortc tracks.

Headless sources let everything run without devices (tests, servers, the demo):

* `TestCamera`: a moving colour pattern with a clock and a frame counter burnt in, paced at a
  fixed frame rate (640x480 at 15 fps unless told otherwise);
* `TestTone`: a 1 kHz tone at -20 dBFS, in 20 ms frames of 48 kHz mono;
* `DocumentTrack`: one page of a PDF (rendered with PDFium) or an image, as a slow still video.

Real devices and media files go through aiortc's `MediaPlayer` (FFmpeg): `/dev/videoN` (v4l2),
a video file (looped), `screen` (X11 grab of $DISPLAY), `alsa:DEVICE` / `pulse:DEVICE`.

`open_camera`, `open_microphone` and `open_share` turn the command line's words into tracks,
and raise `SourceError` with what to use instead when a source cannot be opened.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import av
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from PIL import Image, ImageDraw, ImageFont

from federation.clock import CHINA

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz

# Shared documents are scaled to fit this box (legible, and cheap enough to encode).
SHARE_BOX = (960, 720)
SHARE_FPS = 5.0


def caption_clock(now: datetime | None = None) -> str:
    """The time burned into test-camera frames: Beijing time, as the CLI shows it, whatever
    zone the machine keeps (a recording's picture then matches the case's history)."""
    return (now or datetime.now(CHINA)).astimezone(CHINA).strftime("%H:%M:%S.%f")[:-3]


class SourceError(Exception):
    """A source that cannot be opened; the message says what to use instead."""


class _Paced:
    """Frame pacing at a fixed rate: the n-th frame is due at start + n / rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.count = 0
        self._start: float | None = None

    async def next(self) -> int:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            due = self._start + self.count / self.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell far behind (a stalled machine): skip ahead, do not burst
                self._start = loop.time() - self.count / self.rate
        index = self.count
        self.count += 1
        return index


class TestCamera(MediaStreamTrack):
    """A synthetic camera: moving colour bars, a sweeping block, a clock and a frame counter."""

    __test__ = False  # a camera, not a pytest test class
    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0, label: str = "") -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.label = label
        self._pace = _Paced(fps)
        self._bars = _bars(width * 2, height)
        self._font = _font(max(14, height // 16))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pace.next()
        image = self._draw(index)
        frame = _picture(image)
        frame.pts = round(index * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame

    def _draw(self, index: int) -> Image.Image:
        shift = (index * 8) % self.width
        image = self._bars.crop((shift, 0, shift + self.width, self.height))
        draw = ImageDraw.Draw(image)
        block = self.height // 6
        x = int((self.width - block) * (0.5 + 0.5 * math.sin(index / 10)))
        draw.rectangle((x, self.height - 2 * block, x + block, self.height - block), fill=(255, 255, 255))
        text = f"{caption_clock()}  #{index}" + (f"\n{self.label}" if self.label else "")
        draw.rectangle((0, 0, self.width, self._font.size * (3 if self.label else 2)), fill=(0, 0, 0))
        draw.multiline_text((8, 4), text, fill=(255, 255, 255), font=self._font)
        return image


class TestTone(MediaStreamTrack):
    """A 1 kHz sine at -20 dBFS: 48 kHz mono, 20 ms frames (a whole number of periods each)."""

    __test__ = False
    kind = "audio"

    def __init__(self, frequency: int = 1000) -> None:
        super().__init__()
        self._pace = _Paced(AUDIO_RATE / AUDIO_FRAME_SAMPLES)
        amplitude = 0.1 * 32767
        samples = [
            round(amplitude * math.sin(2 * math.pi * frequency * n / AUDIO_RATE))
            for n in range(AUDIO_FRAME_SAMPLES)
        ]
        self._pcm = struct.pack(f"<{AUDIO_FRAME_SAMPLES}h", *samples)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pace.next()
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class DocumentTrack(MediaStreamTrack):
    """A still picture (a PDF page or an image) sent as slow video, so the other clerk can read it."""

    kind = "video"

    def __init__(self, image: Image.Image, fps: float = SHARE_FPS) -> None:
        super().__init__()
        self.image = _fit(image.convert("RGB"), SHARE_BOX)
        self.fps = fps
        self._pace = _Paced(fps)
        self._frame = _picture(self.image).reformat(format="yuv420p")

    @classmethod
    def open(cls, path: Path, page: int = 1) -> DocumentTrack:
        return cls(render_document(path, page))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pace.next()
        frame = self._frame.reformat()  # a fresh frame object each time; the encoder may keep one
        frame.pts = round(index * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def _picture(image: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame


def render_document(path: Path, page: int = 1) -> Image.Image:
    """Page `page` (from 1) of a PDF, or an image file, as a picture."""
    if not path.is_file():
        raise SourceError(f"{path} is not a file; --share takes a PDF, an image (PNG, JPEG) or `screen`")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"%PDF-"):
        import pypdfium2

        try:
            document = pypdfium2.PdfDocument(str(path))
        except pypdfium2.PdfiumError as error:
            raise SourceError(f"{path} looks like a PDF but cannot be read: {error}") from None
        try:
            if not 1 <= page <= len(document):
                raise SourceError(f"{path} has {len(document)} pages; choose --page 1..{len(document)}")
            pdf_page = document[page - 1]
            width, height = pdf_page.get_size()
            scale = min(SHARE_BOX[0] / width, SHARE_BOX[1] / height)
            image: Image.Image = pdf_page.render(scale=scale).to_pil()
            return image
        finally:
            document.close()
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (OSError, Image.DecompressionBombError) as error:
        raise SourceError(f"{path} is neither a PDF nor an image that can be read: {error}") from None


@dataclass
class Sources:
    """The tracks one window sends, and the players behind them (stopped with the call)."""

    camera: MediaStreamTrack | None = None
    microphone: MediaStreamTrack | None = None
    share: MediaStreamTrack | None = None
    players: list[MediaPlayer] = field(default_factory=list)

    def stop(self) -> None:
        for track in (self.camera, self.microphone, self.share):
            if track is not None:
                track.stop()


def open_camera(spec: str, *, label: str = "", width: int = 640, height: int = 480, fps: float = 15.0) -> Any:
    """`test`, `none`, `/dev/videoN` or a video file; returns (track or None, player or None)."""
    if spec == "test":
        return TestCamera(width, height, fps, label), None
    if spec == "none":
        return None, None
    if spec.startswith("/dev/video"):
        if not os.path.exists(spec):
            raise SourceError(f"there is no camera {spec}; use --camera test for the test camera")
        options = {"video_size": f"{width}x{height}", "framerate": str(int(fps))}
        player = _player(spec, format="v4l2", options=options)
    else:
        if not Path(spec).is_file():
            raise SourceError(
                f"--camera {spec}: no such device or file; use test, /dev/videoN or a video file"
            )
        player = _player(spec, loop=True)
    if player.video is None:
        raise SourceError(f"{spec} has no video")
    return player.video, player


def open_microphone(spec: str) -> Any:
    """`test`, `none`, `alsa:DEVICE`, `pulse:DEVICE` or an audio file."""
    if spec == "test":
        return TestTone(), None
    if spec == "none":
        return None, None
    system, _, device = spec.partition(":")
    if system in {"alsa", "pulse"} and device:
        player = _player(device, format=system)
    elif Path(spec).is_file():
        player = _player(spec, loop=True)
    else:
        raise SourceError(
            f"--mic {spec}: use test, none, alsa:DEVICE (e.g. alsa:default), pulse:DEVICE or an audio file"
        )
    if player.audio is None:
        raise SourceError(f"{spec} has no audio")
    return player.audio, player


def open_share(spec: str, page: int = 1) -> Any:
    """`screen` (X11) or a document (PDF page, image); returns (track, player or None)."""
    if spec == "screen":
        display = os.environ.get("DISPLAY", "")
        if not display:
            raise SourceError(
                "screen sharing needs an X display ($DISPLAY is not set); share a document instead: "
                "--share FILE.pdf or --share FILE.png"
            )
        options = {"framerate": str(int(SHARE_FPS)), "draw_mouse": "1"}
        player = _player(display, format="x11grab", options=options)
        return player.video, player
    return DocumentTrack.open(Path(spec), page), None


def _player(source: str, **kwargs: Any) -> MediaPlayer:
    try:
        return MediaPlayer(source, **kwargs)
    except (av.FFmpegError, OSError) as error:
        raise SourceError(f"cannot open {source}: {error}") from None


def _bars(width: int, height: int) -> Image.Image:
    colours = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0)]
    colours += [(0, 0, 192), (16, 16, 16)]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    step = width // 16
    for i in range(16):
        draw.rectangle((i * step, 0, (i + 1) * step, height), fill=colours[i % len(colours)])
    return image


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Scale to fit `box` keeping the aspect ratio, with even sides (the encoder needs them)."""
    scale = min(box[0] / image.width, box[1] / image.height, 1.0)
    width = max(2, int(image.width * scale) // 2 * 2)
    height = max(2, int(image.height * scale) // 2 * 2)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)
