"""A call as the window's process runs it: the media endpoint, driven through the node's local API.

`tongban video call` and `tongban video answer` run one `CallSession`. It opens the window's
sources, makes the aiortc offer (or answer), hands the SDP to its own node (which carries it to
the peer as a federation message), and keeps the node's stream of call events open for the
whole call. Then it waits for the first picture (connect timeout), reports live figures every
second, streams the recording to the node when asked, and hangs up on Ctrl-C, after
`--duration`, when the other side hangs up, or when the media stops.

Hanging up runs in this order, so that both sides count the same frames: stop sending, close
the media (RTCP BYE reaches the other window at once), tell the node (it tells the peer's node),
then hand over the final figures and finish the recording. The window on the other side stops
sending as soon as the BYE arrives and waits a moment for the signaling to learn why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tongban_api.v1 import video_pb2, video_pb2_grpc
from video import convert
from video.endpoint import ConnectTimeout, Endpoint
from video.sources import Sources, open_camera, open_microphone, open_share
from video.units import Figures

_log = logging.getLogger("tongban.video.session")

# How long a window that saw the media end waits for the signaling to say why.
SIGNAL_GRACE_SECONDS = 3.0
UPLOAD_CHUNK = 1 << 20


@dataclass
class CallOptions:
    camera: str = "test"
    mic: str = "test"
    share: str = ""
    page: int = 1
    record: bool = False
    duration: float = 0.0  # seconds of media before hanging up; 0: until stopped
    label: str = ""


@dataclass
class CallResult:
    call: Any  # video_pb2.Call as the node had it at the end
    figures: Figures
    reason: str
    outcome: str
    ended_here: bool
    recording: Any = None  # video_pb2.Recording
    recording_error: str = ""


Status = Callable[[str, dict[str, Any]], None]


def open_sources(options: CallOptions) -> Sources:
    camera, camera_player = open_camera(options.camera, label=options.label)
    mic, mic_player = open_microphone(options.mic)
    share, share_player = open_share(options.share, options.page) if options.share else (None, None)
    players = [p for p in (camera_player, mic_player, share_player) if p is not None]
    return Sources(camera, mic, share, players)


@dataclass
class _Upload:
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[Any] | None = None


class CallSession:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...],
        options: CallOptions,
        status: Status | None = None,
    ) -> None:
        self.stub = video_pb2_grpc.VideoStub(channel)
        self.metadata = metadata
        self.options = options
        self.status = status or (lambda kind, info: None)
        self.stop_requested = asyncio.Event()
        self.stop_reason = "hung up"
        self.call_id = ""

    def hang_up(self, reason: str = "hung up") -> None:
        """Ask the running call to end (from a signal handler or another task)."""
        self.stop_reason = reason
        self.stop_requested.set()

    # -- the two ways in ----------------------------------------------------------------------

    async def place(self, case_id: str) -> CallResult:
        settings = await self.stub.Settings(video_pb2.VideoSettingsRequest(), metadata=self.metadata)
        endpoint = self._endpoint(settings)
        try:
            offer = await endpoint.offer()
            request = video_pb2.PlaceCallRequest(
                case_id=case_id,
                offer_sdp=offer,
                shares=bool(self.options.share),
                records=self.options.record,
                label=self.options.label,
            )
            events = self.stub.PlaceCall(request, metadata=self.metadata)
            return await self._run(endpoint, events, settings, caller=True)
        finally:
            await endpoint.close()

    async def answer(self, call_id: str, *, auto: bool, wait_seconds: float) -> CallResult:
        settings = await self.stub.Settings(video_pb2.VideoSettingsRequest(), metadata=self.metadata)
        endpoint = self._endpoint(settings)  # ready before the call comes: answering is quicker
        try:
            ringing = await self._next_call(call_id, auto, wait_seconds)
            self.call_id = ringing.call_id
            self.status("ringing", {"call": ringing})
            answer = await endpoint.answer(ringing.offer_sdp)
            request = video_pb2.AnswerCallRequest(
                call_id=ringing.call_id, answer_sdp=answer, label=self.options.label
            )
            events = self.stub.AnswerCall(request, metadata=self.metadata)
            return await self._run(endpoint, events, settings, caller=False)
        finally:
            await endpoint.close()

    async def _next_call(self, call_id: str, auto: bool, wait_seconds: float) -> Any:
        request = video_pb2.NextCallRequest(call_id=call_id, wait=auto, wait_seconds=wait_seconds)
        waiting = asyncio.ensure_future(self.stub.NextCall(request, metadata=self.metadata))
        stopping = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
            raise asyncio.CancelledError
        stopping.cancel()
        return waiting.result()

    def _endpoint(self, settings: Any) -> Endpoint:
        return Endpoint(
            open_sources(self.options),
            convert.ice_servers(settings),
            media_timeout=settings.media_timeout_seconds or 10.0,
        )

    # -- the call -----------------------------------------------------------------------------

    async def _run(self, endpoint: Endpoint, events: Any, settings: Any, *, caller: bool) -> CallResult:
        state: dict[str, Any] = {"accepted": False, "call": None, "ended_event": None}
        upload = _Upload()
        tasks: set[asyncio.Future[Any]] = set()
        connected = asyncio.Event()

        def spawn(coroutine: Any) -> asyncio.Future[Any]:
            task: asyncio.Future[Any] = asyncio.ensure_future(coroutine)
            tasks.add(task)
            task.add_done_callback(failed)
            return task

        def failed(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                _log.error("call task failed", exc_info=task.exception())
                self.hang_up(f"this window failed: {task.exception()}")

        async def on_answered(call: Any) -> None:
            if caller:
                await endpoint.accept(call.answer_sdp)
            if self.options.record:
                self._start_recording(endpoint, upload, call)
            spawn(wait_connected())

        async def wait_connected() -> None:
            try:
                setup = await endpoint.connected(settings.connect_timeout_seconds or 20.0)
            except ConnectTimeout as error:
                endpoint.end(str(error), failed=True)
                state["outcome"] = "failed"
                return
            figures = await endpoint.figures()
            await self._progress(True, figures)
            connected.set()
            self.status("connected", {"setup_seconds": setup})
            spawn(report())

        async def report() -> None:
            started = time.monotonic()
            while True:
                await asyncio.sleep(1.0)
                figures = await endpoint.figures()
                self.status("figures", {"figures": figures})
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self._progress(False, figures)
                if self.options.duration and time.monotonic() - started >= self.options.duration:
                    self.hang_up(f"the planned {self.options.duration:g} s are over")

        async def follow() -> None:
            async for event in _events(events):
                call = event.call
                state["call"] = call
                if not self.call_id and call.call_id:
                    self.call_id = call.call_id
                    self.status("placed", {"call": call})
                if call.state == "ended":
                    state["ended_event"] = call
                    return
                if event.type == "ringing":
                    self.status("ringing", {"call": call})
                if call.state in ("answered", "active") and not state["accepted"]:
                    state["accepted"] = True
                    self.status("answered", {"call": call})
                    await on_answered(call)

        following = spawn(follow())
        stopping = spawn(self.stop_requested.wait())
        media_end = asyncio.ensure_future(asyncio.shield(endpoint.ended))
        tasks.add(media_end)
        try:
            await asyncio.wait({following, stopping, media_end}, return_when=asyncio.FIRST_COMPLETED)
            if following.done() and following.exception() is not None:
                raise following.exception()  # type: ignore[misc]
            ended_here = state["ended_event"] is None
            reason = self.stop_reason
            outcome = state.get("outcome", "")
            if media_end.done() and ended_here and not stopping.done():
                # The media ended by itself: stop sending at once, then give the signaling a
                # moment to say why (the other side's hang-up is usually on its way).
                reason = media_end.result()
                outcome = outcome or ("failed" if endpoint.failed else "")
                endpoint.stop_sending()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(following), SIGNAL_GRACE_SECONDS)
                ended_here = state["ended_event"] is None
            endpoint.stop_sending()
            figures = await endpoint.close()
            if ended_here:
                final = await self._hang_up(reason, outcome, figures)
            else:
                remote = state["ended_event"]
                reason, outcome = remote.end_reason, remote.outcome
                final = await self._hang_up(reason, outcome, figures)
            with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
                await asyncio.wait_for(asyncio.shield(following), 5.0)
            recording, recording_error = await self._finish_upload(upload)
            self.status("ended", {"call": final, "reason": reason})
            return CallResult(
                call=final,
                figures=figures,
                reason=final.end_reason or reason,
                outcome=final.outcome or outcome,
                ended_here=ended_here,
                recording=recording,
                recording_error=recording_error,
            )
        finally:
            for task in tasks:
                task.cancel()
            events.cancel()

    async def _progress(self, connected: bool, figures: Figures) -> None:
        await self.stub.ReportProgress(
            video_pb2.CallProgress(
                call_id=self.call_id, connected=connected, figures=convert.figures_pb(figures)
            ),
            metadata=self.metadata,
        )

    async def _hang_up(self, reason: str, outcome: str, figures: Figures) -> Any:
        request = video_pb2.HangUpRequest(
            call_id=self.call_id, reason=reason, outcome=outcome, figures=convert.figures_pb(figures)
        )
        return await self.stub.HangUp(request, metadata=self.metadata)

    # -- recording ----------------------------------------------------------------------------

    def _start_recording(self, endpoint: Endpoint, upload: _Upload, call: Any) -> None:
        loop = asyncio.get_running_loop()

        def write(data: bytes) -> None:  # called from the recorder's thread
            loop.call_soon_threadsafe(upload.queue.put_nowait, data)

        title = f"tongban call {call.call_id}, case {call.case_id}, with {call.peer}"
        endpoint.record(write, title)
        upload.task = asyncio.ensure_future(
            self.stub.Record(self._chunks(upload.queue, call.call_id), metadata=self.metadata)
        )

    @staticmethod
    async def _chunks(
        queue: asyncio.Queue[bytes | None], call_id: str
    ) -> AsyncIterator[video_pb2.RecordingChunk]:
        yield video_pb2.RecordingChunk(call_id=call_id, container="matroska")
        offset = 0
        done = False
        while not done:
            data = await queue.get()
            if data is None:
                break
            parts = [data]
            size = len(data)
            while size < UPLOAD_CHUNK and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    done = True
                    break
                parts.append(more)
                size += len(more)
            yield video_pb2.RecordingChunk(call_id=call_id, data=b"".join(parts), offset=offset)
            offset += size
        yield video_pb2.RecordingChunk(call_id=call_id, final=True, offset=offset)

    async def _finish_upload(self, upload: _Upload) -> tuple[Any, str]:
        if upload.task is None:
            return None, ""
        upload.queue.put_nowait(None)
        try:
            return await asyncio.wait_for(upload.task, 60), ""
        except grpc.aio.AioRpcError as error:
            return None, f"the node did not keep the recording: {error.details()}"
        except TimeoutError:
            return None, "the node did not confirm the recording within 60 s"


async def _events(stream: Any) -> AsyncIterator[Any]:
    async for event in stream:
        yield event
