"""Materials on disk: content-addressed files in the home's blob folder.

    blobs/ab/abcdef…  a complete file, named by the hex SHA-256 of its bytes
    blobs/partial/…   a file still arriving, written chunk by chunk at its offsets, handed to
                      the disk as it goes (`WriteBehind`)

Only a validated 64-character hex digest ever becomes part of a path; the name a clerk gave
a file is kept as text for display and never touches the file system. A file's type is read
from its content (PDF, JPEG, PNG, OFD), never from its name: a renamed program is refused.
Blocking file work runs in threads (callers use `asyncio.to_thread`).
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from federation.errors import InvalidArgument

CHUNK = 1024 * 1024
_HEX = re.compile(r"[0-9a-f]{64}")

_EXECUTABLES = {
    b"\x7fELF": "a Linux program (ELF)",
    b"MZ": "a Windows program (EXE)",
    b"\xcf\xfa\xed\xfe": "a macOS program (Mach-O)",
    b"#!": "a script",
}


def valid_digest(text: str) -> str:
    value = text.strip().lower()
    if not _HEX.fullmatch(value):
        raise InvalidArgument(f"{text[:80]!r} is not a SHA-256 digest (64 hexadecimal characters)")
    return value


def sniff(head: bytes, path: Path | None = None) -> str | None:
    """The format of a file by its first bytes (and, for OFD, its ZIP directory); None if none."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"PK\x03\x04") and path is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                if "OFD.xml" in archive.namelist():
                    return "ofd"
        except (zipfile.BadZipFile, OSError):
            return None
    return None


def describe(head: bytes) -> str:
    for magic, what in _EXECUTABLES.items():
        if head.startswith(magic):
            return what
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive that is not an OFD document"
    return "not a PDF, JPEG, PNG or OFD file"


class BlobStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.partial_dir = root / "partial"
        # fsync each finished file: what a node with power-loss-safe storage (SQLite FULL,
        # PostgreSQL) needs; with SQLite NORMAL a commit survives kill -9 but not power loss,
        # and the files kept beside it need no more than that.
        self.durable = durable

    def path(self, digest: str) -> Path:
        digest = valid_digest(digest)
        return self.root / digest[:2] / digest

    def partial(self, digest: str) -> Path:
        return self.partial_dir / valid_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def format(self, digest: str) -> str:
        """The checked format of a stored blob."""
        path = self.path(digest)
        with path.open("rb") as handle:
            head = handle.read(16)
        found = sniff(head, path)
        if found is None:
            raise InvalidArgument(f"material {digest[:12]}… is {describe(head)}")
        return found

    # -- writing --------------------------------------------------------------------------------

    def write_chunk(self, digest: str, index: int, data: bytes, chunk_size: int = CHUNK) -> None:
        path = self.partial(digest)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, index * chunk_size)
        finally:
            os.close(fd)

    def chunks_present(
        self, digest: str, size: int, expected: list[str], chunk_size: int = CHUNK
    ) -> set[int]:
        """Indexes of the chunks of a partial file whose bytes match the expected chunk digests."""
        path = self.partial(digest)
        if not path.exists():
            return set()
        present = set()
        with path.open("rb") as handle:
            for index, want in enumerate(expected):
                handle.seek(index * chunk_size)
                data = handle.read(min(chunk_size, size - index * chunk_size))
                if data and hashlib.sha256(data).hexdigest() == want:
                    present.add(index)
        return present

    def finish(self, digest: str, size: int, *, hashed: str | None = None) -> str:
        """Check a fully written partial file and move it into place; returns its format.

        `hashed`: the SHA-256 already computed while the chunks were written in order (else
        the file is read again to compute it).
        """
        path = self.partial(digest)
        with path.open("rb") as handle:
            head = handle.read(16)
            if hashed is None:
                hasher = hashlib.sha256(head)
                for block in iter(lambda: handle.read(CHUNK), b""):
                    hasher.update(block)
                hashed = hasher.hexdigest()
        actual = path.stat().st_size
        if actual != size or hashed != digest:
            path.unlink(missing_ok=True)
            raise InvalidArgument(
                f"material {digest[:12]}… arrived with SHA-256 {hashed[:12]}… and {actual} bytes, "
                f"not the {size} bytes announced; it was discarded, to be sent again"
            )
        found = sniff(head, path)
        if found is None:
            path.unlink(missing_ok=True)
            raise InvalidArgument(
                f"material {digest[:12]}… is {describe(head)}; only PDF, JPEG, PNG and OFD are accepted"
            )
        if self.durable:
            self._sync(path)
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(path, final)
        return found

    def put(self, data: bytes) -> tuple[str, str]:
        """Store bytes at once (small files, tests): (digest, format)."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self.write_chunk(digest, 0, data, chunk_size=max(1, len(data)))
            self.finish(digest, len(data))
        return digest, self.format(digest)

    def marks(self, digest: str) -> Path:
        """The journal of chunks written to a partial file (one index a line)."""
        return self.partial(digest).with_suffix(".chunks")

    def read_chunk(self, digest: str, index: int, chunk_size: int = CHUNK) -> bytes:
        with self.path(digest).open("rb") as handle:
            handle.seek(index * chunk_size)
            return handle.read(chunk_size)

    @staticmethod
    def _sync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_file_range() -> Any:
    """Linux's sync_file_range(2) from the C library, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_SYNC_FILE_RANGE = _sync_file_range()
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_* of <fcntl.h>


# How many ranges (chunks) a write-behind keeps between handing a range to the disk and dropping
# it from the cache. Two, measured here (48 MiB fetches between two nodes, five rounds, runs
# alternating): medians of about 370 MiB/s at 2 against 338 at 1 (the writer waits on a range
# the disk has not finished), 294 at 4 and 330 at 8, and 10% less CPU than at 8: every range in
# the lag is fresh page-cache memory at the start of each fetch, which the host hands out
# slowly, and stays cached after its end.
WRITE_BEHIND_LAG = 2


class WriteBehind:
    """Moves a large file's bytes to the disk while it is written, and out of the page cache.

    A material is written once and read rarely, but plain writes leave every byte of it dirty
    in the page cache until the kernel gets round to it: a 50 MiB scan takes 50 MiB of fresh
    memory (on the virtual machines here the host hands that out at about 400 MiB/s, a fifth of
    the network's speed) and pushes the database's pages out. So, as PostgreSQL does with
    `backend_flush_after`: each range written is handed to the disk at once (sync_file_range,
    which does not wait), and once `lag` more ranges are written after it, it is waited for and
    dropped from the cache (posix_fadvise DONTNEED), so the same few MiB of memory carry the
    whole file and a fetch goes no faster than the disk takes it. The last `lag` ranges stay
    cached and reach the disk as any write does. This is not durability (no metadata, no disk
    cache flush): `BlobStore.finish` still fsyncs where the node asks for that. Where the calls
    do not exist (macOS), plain writes.

    With `keep_cached`, the bytes still go to the disk at once but stay in the cache (clean): for
    an upload at the window, which the competent node fetches moments later.
    """

    def __init__(self, fd: int, lag: int = WRITE_BEHIND_LAG, *, keep_cached: bool = False) -> None:
        self._fd = fd
        self._lag = lag
        self._keep = keep_cached
        self._pending: collections.deque[tuple[int, int]] = collections.deque()

    def written(self, offset: int, length: int) -> None:
        if _SYNC_FILE_RANGE is None or length <= 0:
            return
        _SYNC_FILE_RANGE(self._fd, offset, length, _WRITE)
        if self._keep:
            return
        self._pending.append((offset, length))
        if len(self._pending) > self._lag:
            offset, length = self._pending.popleft()
            _SYNC_FILE_RANGE(self._fd, offset, length, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
            os.posix_fadvise(self._fd, offset, length, os.POSIX_FADV_DONTNEED)


class Partial:
    """A material arriving chunk by chunk: the file, its chunk journal, and a running SHA-256.

    A chunk's index goes into the journal after its bytes are written (both reach the page
    cache, which outlives the process), so after a crash the journal never names a chunk that
    is not there; the final SHA-256 check catches anything worse. While chunks come in order
    from the first, the hash is computed as they arrive and the file need not be read again.
    """

    def __init__(self, store: BlobStore, digest: str, total: int, chunk_size: int = CHUNK) -> None:
        self.path = store.partial(digest)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        journal = store.marks(digest)
        self.done: set[int] = set()
        if self.path.exists() and journal.exists():
            for line in journal.read_text(encoding="ascii").splitlines():
                if line.strip().isdigit() and int(line) < total:
                    self.done.add(int(line))
        self._chunk = chunk_size
        self._total = total
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        self._behind = WriteBehind(self._fd)
        self._journal = journal.open("a", encoding="ascii")
        self._hasher: Any = None if self.done else hashlib.sha256()
        self._next = 0

    def write(self, index: int, data: bytes) -> None:
        os.pwrite(self._fd, data, index * self._chunk)
        self._behind.written(index * self._chunk, len(data))
        self._journal.write(f"{index}\n")
        self._journal.flush()
        if self._hasher is not None:
            if index == self._next:
                self._hasher.update(data)
                self._next += 1
            else:
                self._hasher = None

    def hashed(self) -> str | None:
        """The SHA-256 of the whole file, when every chunk came in order."""
        if self._hasher is None or self._next != self._total:
            return None
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        os.close(self._fd)
        self._journal.close()


class Upload:
    """A material a clerk uploads: bytes in order, in pieces of any size, hashed as they come.

    Handed to the disk as it is written, but kept in the page cache: the competent node fetches
    it moments later. Not resumable (the clerk's program sends it again), so no journal. Bytes
    of the same digest are the same bytes, so an upload meeting a fetch or another upload of the
    same material in `blobs/partial/` writes what they write.
    """

    def __init__(self, store: BlobStore, digest: str) -> None:
        self.path = store.partial(digest)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        self._behind = WriteBehind(self._fd, keep_cached=True)
        self._hasher = hashlib.sha256()
        self.size = 0

    def append(self, data: bytes) -> None:
        os.pwrite(self._fd, data, self.size)
        self._behind.written(self.size, len(data))
        self._hasher.update(data)
        self.size += len(data)

    def hashed(self) -> str:
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        os.close(self._fd)


def chunk_digests(path: Path, chunk_size: int = CHUNK) -> tuple[str, int, list[str]]:
    """(SHA-256 of the whole file, size, SHA-256 of each chunk) of a local file."""
    whole = hashlib.sha256()
    parts: list[str] = []
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            whole.update(block)
            parts.append(hashlib.sha256(block).hexdigest())
            size += len(block)
    return whole.hexdigest(), size, parts
