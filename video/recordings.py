"""Recordings in the case file: written as the endpoint streams them, sealed by their SHA-256.

A recording arrives in chunks while the call runs (the endpoint's `Record` stream). Each chunk
is appended to `blobs/recordings/<call>-<id>.mkv.part` and flushed, and the file is synced to
disk at least once a second, so a recording survives the endpoint being killed, and the node
too: what reached the disk stays. Sealing syncs and closes the file, hashes it, reads it back
for its duration and frame counts, and renames it to `blobs/recordings/<sha256>.mkv`. All file
work runs in threads; the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from federation.outbox import new_message_id
from video.units import RecordingSummary

SYNC_EVERY_SECONDS = 1.0
PART = ".mkv.part"


@dataclass(frozen=True)
class SealedRecording:
    recording_id: str
    call_id: str
    path: Path
    sha256: str
    size_bytes: int
    summary: RecordingSummary


class IncomingRecording:
    def __init__(self, path: Path, recording_id: str, call_id: str, *, left_over: bool = False) -> None:
        self.path = path
        self.recording_id = recording_id
        self.call_id = call_id
        self.size = path.stat().st_size if left_over else 0
        self._file: IO[bytes] | None = None if left_over else path.open("ab")
        self._synced_at = time.monotonic()

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        self.size += len(data)
        if time.monotonic() - self._synced_at >= SYNC_EVERY_SECONDS:
            os.fsync(self._file.fileno())
            self._synced_at = time.monotonic()

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


class RecordingStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def incoming(self, call_id: str) -> IncomingRecording:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        recording_id = new_message_id()
        return IncomingRecording(self.folder / f"{call_id}-{recording_id}{PART}", recording_id, call_id)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256")
        return self.folder / f"{sha256}.mkv"

    def leftovers(self) -> list[IncomingRecording]:
        """Recordings a stopped node was still receiving (sealed at start, as incomplete)."""
        found = []
        for path in sorted(self.folder.glob(f"*{PART}")) if self.folder.exists() else []:
            call_id, _, recording_id = path.name[: -len(PART)].partition("-")
            found.append(IncomingRecording(path, recording_id, call_id, left_over=True))
        return found

    async def seal(self, incoming: IncomingRecording) -> SealedRecording:
        return await asyncio.to_thread(self._seal, incoming)

    def _seal(self, incoming: IncomingRecording) -> SealedRecording:
        incoming._close()
        digest = hashlib.sha256()
        size = 0
        with incoming.path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        sha256 = digest.hexdigest()
        from video.recorder import summarize  # PyAV (20 MB) only once there is a recording

        summary = summarize(incoming.path)
        final = self.path(sha256)
        os.replace(incoming.path, final)
        return SealedRecording(incoming.recording_id, incoming.call_id, final, sha256, size, summary)
