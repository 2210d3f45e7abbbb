"""Video: calls about cases for the media endpoints and clerks, recordings in the case file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from sqlalchemy import select
from sqlmodel import col

from federation.errors import InvalidArgument, NotFound
from node.api.errors import refusals
from tongban_api.v1 import video_pb2, video_pb2_grpc
from video import convert
from video.calls import CallEvent
from video.models import RecordingRow
from video.recordings import IncomingRecording
from video.units import ENDED

if TYPE_CHECKING:
    from video.component import VideoComponent

EXPORT_CHUNK = 256 * 1024
# A recording stream silent this long, for a call that has ended, is taken as cut off.
RECORDING_IDLE_SECONDS = 3.0


def add_video_service(component: VideoComponent, server: grpc.aio.Server) -> list[str]:
    video_pb2_grpc.add_VideoServicer_to_server(VideoServicer(component), server)
    return ["tongban.v1.Video"]


def _event(event: CallEvent) -> video_pb2.CallEvent:
    return convert.event_pb(event.kind, convert.call_pb(event.call))


class VideoServicer(video_pb2_grpc.VideoServicer):
    def __init__(self, component: VideoComponent) -> None:
        self._component = component

    @property
    def _calls(self) -> Any:
        return self._component.calls

    async def Settings(
        self, request: video_pb2.VideoSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.VideoSettings:
        c = self._component
        return convert.settings_pb(
            c.node.node_id,
            c.ice_servers,
            c.settings.ring_timeout,
            c.settings.connect_timeout,
            c.settings.media_timeout,
        )

    async def PlaceCall(
        self, request: video_pb2.PlaceCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[video_pb2.CallEvent]:
        async with refusals(context):
            row = await self._calls.place(
                request.case_id.strip(),
                request.offer_sdp,
                shares=request.shares,
                records=request.records,
                label=request.label,
            )
        async for event in self._calls.subscribe(row.call_id, "caller"):
            yield _event(event)

    async def NextCall(
        self, request: video_pb2.NextCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.Call:
        async with refusals(context):
            row = await self._calls.next_ringing(
                request.call_id, wait=request.wait, wait_seconds=request.wait_seconds
            )
        return convert.call_pb(row)

    async def AnswerCall(
        self, request: video_pb2.AnswerCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[video_pb2.CallEvent]:
        async with refusals(context):
            row = await self._calls.answer(request.call_id, request.answer_sdp, request.label)
        async for event in self._calls.subscribe(row.call_id, "callee"):
            yield _event(event)

    async def DeclineCall(
        self, request: video_pb2.DeclineCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.Call:
        async with refusals(context):
            row = await self._calls.decline(request.call_id, request.reason)
        return convert.call_pb(row)

    async def ReportProgress(
        self, request: video_pb2.CallProgress, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.Call:
        figures = convert.figures(request.figures) if request.HasField("figures") else None
        async with refusals(context):
            row = await self._calls.progress(request.call_id, request.connected, figures)
        return convert.call_pb(row, figures)

    async def HangUp(
        self, request: video_pb2.HangUpRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.Call:
        figures = convert.figures(request.figures) if request.HasField("figures") else None
        async with refusals(context):
            row = await self._calls.finish(request.call_id, request.reason, request.outcome, figures)
        return convert.call_pb(row)

    async def ListCalls(
        self, request: video_pb2.ListCallsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.ListCallsReply:
        items = await self._calls.list(request.case_id, request.ongoing_only, min(request.limit or 100, 1000))
        return video_pb2.ListCallsReply(calls=[convert.call_pb(row, live, n) for row, live, n in items])

    async def Record(
        self,
        request_iterator: AsyncIterator[video_pb2.RecordingChunk],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> video_pb2.Recording:
        component = self._component
        incoming: IncomingRecording | None = None
        complete = False
        chunks = aiter(request_iterator)
        reading: asyncio.Future[video_pb2.RecordingChunk] | None = None
        try:
            while True:
                reading = reading or asyncio.ensure_future(anext(chunks))
                done, _ = await asyncio.wait({reading}, timeout=RECORDING_IDLE_SECONDS)
                if not done:
                    # Nothing for a while: a window that was killed may leave the stream open.
                    if incoming is not None and await self._call_over(incoming.call_id):
                        reading.cancel()
                        break
                    continue
                try:
                    chunk = reading.result()
                except StopAsyncIteration:
                    break
                reading = None
                if incoming is None:
                    async with refusals(context):
                        call = await self._calls.get(chunk.call_id)
                    incoming = component.store.incoming(call.call_id)
                data = chunk.data  # read once: each read of the field is a fresh copy
                if data:
                    await incoming.write(data)
                if chunk.final:
                    complete = True
                    break
        except asyncio.CancelledError:
            if reading is not None:
                reading.cancel()
            if incoming is not None:  # the endpoint went away: keep what arrived
                component.spawn(component.seal(incoming, complete=False, note=_CUT_OFF))
            raise
        if incoming is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a recording stream must name its call")
        assert incoming is not None
        # Sealing belongs to the node: it goes on even if this call is cancelled meanwhile.
        sealing = component.spawn(
            component.seal(incoming, complete=complete, note="" if complete else _CUT_OFF)
        )
        recorded = await asyncio.shield(sealing)
        row = await component.node.db.read(lambda s: s.get(RecordingRow, recorded.recording_id))
        assert row is not None
        return convert.recording_pb(row)

    async def _call_over(self, call_id: str) -> bool:
        return bool((await self._calls.get(call_id)).state == ENDED)

    async def ListRecordings(
        self, request: video_pb2.ListRecordingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> video_pb2.ListRecordingsReply:
        if not request.case_id and not request.call_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "name a case (or a call) to list its recordings"
            )
        case_id = await self._calls.case_id(request.case_id) if request.case_id else ""
        rows = await self._component.node.db.read(lambda s: _recordings(s, case_id, request.call_id))
        return video_pb2.ListRecordingsReply(recordings=[convert.recording_pb(row) for row in rows])

    async def ExportRecording(
        self, request: video_pb2.ExportRecordingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[video_pb2.RecordingChunk]:
        async with refusals(context):
            row = await self._find_recording(request.call_id, request.recording_id)
        path = self._component.store.path(row.sha256)
        offset = 0
        with path.open("rb") as handle:
            while data := await asyncio.to_thread(handle.read, EXPORT_CHUNK):
                yield video_pb2.RecordingChunk(call_id=row.call_id, data=data, offset=offset)
                offset += len(data)
        yield video_pb2.RecordingChunk(
            call_id=row.call_id, final=True, offset=offset, container=row.container
        )

    async def _find_recording(self, call_id: str, recording_id: str) -> RecordingRow:
        if not call_id and not recording_id:
            raise InvalidArgument("name the call whose recording to export")
        rows = await self._component.node.db.read(lambda s: _recordings(s, "", call_id))
        if recording_id:
            rows = [r for r in rows if r.recording_id == recording_id]
        if not rows:
            raise NotFound(
                f"no recording of call {call_id or recording_id} here; `tongban video recordings CASE`"
            )
        return rows[-1]


_CUT_OFF = "cut off: the recording window went away mid-call; readable up to where it stopped"


def _recordings(session: Any, case_id: str, call_id: str) -> list[RecordingRow]:
    query = select(RecordingRow).order_by(col(RecordingRow.recorded_at_us))
    if case_id:
        query = query.where(col(RecordingRow.case_id) == case_id)
    if call_id:
        query = query.where(col(RecordingRow.call_id) == call_id)
    return list(session.execute(query).scalars())
