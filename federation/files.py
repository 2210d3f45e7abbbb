"""Writing files that must survive a crash half-way and, for secrets, stay private.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over
the target, so a reader sees the old content or the new, never a torn one. Secret files are
created with mode 0600 from the start (never chmod-ed after the content is already there).
"""

from __future__ import annotations

import os
from pathlib import Path


class FileExists(FileExistsError):
    """A file that must not be overwritten already exists."""


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, exclusive: bool = False) -> None:
    """Replace `path` with `data` atomically; with `exclusive`, refuse if it already exists."""
    if exclusive and path.exists():
        raise FileExists(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive:
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise FileExists(f"{path} already exists; refusing to overwrite it") from None
        finally:
            temporary.unlink(missing_ok=True)
    else:
        os.replace(temporary, path)
    _sync_folder(path.parent)


def write_secret(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a private file (mode 0600) atomically."""
    write_atomic(path, data, mode=0o600, exclusive=exclusive)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
