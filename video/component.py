"""The video component of a node: call signaling, the Video API, recordings in the case file.

Registered in `node/components.py`. It registers the call's message kinds and local events with
the federation (`video.calls`), adds `tongban.v1.Video` to the local API, keeps recordings under
the home's `blobs/recordings/`, and at start seals recordings a stopped node was still receiving
and ends calls whose endpoints were lost with the old process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from video.calls import Calls, CallSettings
from video.cases import CaseHolders
from video.ice import IceServer, parse_ice_servers
from video.recordings import IncomingRecording, RecordingStore
from video.units import Recorded

if TYPE_CHECKING:
    from node.runtime import Node

_log = logging.getLogger("tongban.video")


class VideoComponent:
    name = "video"

    def __init__(self, node: Node, holders: CaseHolders | None = None) -> None:
        self.node = node
        section = node.config.video
        self.ice_servers: list[IceServer] = parse_ice_servers(list(section.ice_servers))
        self.settings = CallSettings(
            ring_timeout=section.ring_timeout_seconds,
            connect_timeout=section.connect_timeout_seconds,
            media_timeout=section.media_timeout_seconds,
        )
        self.holders = holders or _case_holders()
        self.store = RecordingStore(node.home.blobs / "recordings")
        self.calls: Calls
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self, node: Node, api: grpc.aio.Server, federation_port: grpc.aio.Server) -> list[str]:
        from node.api.video import add_video_service

        self.calls = Calls(node.federation, self.holders, self.settings)
        self.calls.register()
        return add_video_service(self, api)

    async def start(self) -> None:
        for left in self.store.leftovers():
            await self.seal(left, complete=False, note="the node stopped while this recording was written")
        await self.calls.start()

    async def stop(self) -> None:
        await self.calls.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        """Run work the node owns (it outlives the API call that started it)."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("video background work failed", exc_info=task.exception())

    async def seal(self, incoming: IncomingRecording, *, complete: bool, note: str = "") -> Recorded:
        """Seal a recording and record its SHA-256 in the message log (event video.recording)."""
        sealed = await self.store.seal(incoming)
        call = await self.calls.get(incoming.call_id)
        summary = sealed.summary
        if not summary.readable:
            note = (note + "; " if note else "") + f"the file cannot be read back: {summary.problem}"
        recorded = Recorded(
            recording_id=sealed.recording_id,
            call_id=call.call_id,
            case_id=call.case_id,
            sha256=sealed.sha256,
            size_bytes=sealed.size_bytes,
            duration_seconds=summary.duration_seconds,
            complete=complete,
            note=note,
            streams=summary.streams,
        )
        await self.calls.record(recorded)
        _log.info(
            "recording of call %s stored: %s, %d bytes, %.1f s%s",
            call.call_id,
            sealed.sha256,
            sealed.size_bytes,
            summary.duration_seconds,
            "" if complete else " (cut off)",
        )
        return recorded


def _case_holders() -> CaseHolders:
    from video.cases import CasesDomain

    return CasesDomain()
