"""Materials are typed by content and addressed by SHA-256; names never become paths."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from federation.errors import InvalidArgument
from node.cases.blobs import BlobStore
from tests.cases.support import scan_pdf, scan_png


def test_pdf_png_jpeg_and_ofd_are_recognised_by_content(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.put(scan_pdf())[1] == "pdf"
    assert store.put(scan_png())[1] == "png"
    assert store.put(b"\xff\xd8\xff\xe0" + bytes(64))[1] == "jpeg"
    ofd = io.BytesIO()
    with zipfile.ZipFile(ofd, "w") as archive:
        archive.writestr("OFD.xml", "<ofd:OFD/>")
    assert store.put(ofd.getvalue())[1] == "ofd"


def test_a_renamed_program_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="a Linux program"):
        BlobStore(tmp_path).put(b"\x7fELF\x02\x01\x01" + bytes(100))
    assert not list((tmp_path / "partial").iterdir()), "the refused file is not kept"


def test_only_a_hex_digest_becomes_a_path(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidArgument, match="not a SHA-256 digest"):
        store.path("../../etc/passwd")
    digest, _ = store.put(scan_pdf())
    assert store.path(digest) == tmp_path / digest[:2] / digest
    assert digest == hashlib.sha256(store.path(digest).read_bytes()).hexdigest()


def test_a_partial_file_hashes_in_order_and_resumes_from_its_journal(tmp_path: Path) -> None:
    from node.cases.blobs import Partial

    store = BlobStore(tmp_path, durable=False)
    data = scan_pdf() + bytes(5000)
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    first = Partial(store, digest, len(pieces), chunk_size=1000)
    for index in range(3):
        first.write(index, pieces[index])
    first.close()  # the fetcher died here

    again = Partial(store, digest, len(pieces), chunk_size=1000)
    assert again.done == {0, 1, 2}, "the journal says which chunks are already written"
    for index in range(3, len(pieces)):
        again.write(index, pieces[index])
    assert again.hashed() is None, "a resumed file is hashed again when finished"
    again.close()
    assert store.finish(digest, len(data)) == "pdf"
    assert store.path(digest).read_bytes() == data

    other = scan_png(3)
    whole = Partial(store, hashlib.sha256(other).hexdigest(), 1, chunk_size=len(other))
    whole.write(0, other)
    assert whole.hashed() == hashlib.sha256(other).hexdigest()
    whole.close()


def _cached_bytes(path: Path) -> int:
    shown = subprocess.run(["fincore", "--json", "--bytes", str(path)], capture_output=True, text=True)
    return int(json.loads(shown.stdout)["fincore"][0]["res"])


@pytest.mark.skipif(
    shutil.which("fincore") is None, reason="needs util-linux's fincore to see the page cache"
)
def test_a_large_material_leaves_only_its_last_chunks_in_the_page_cache(tmp_path: Path) -> None:
    from node.cases.blobs import _SYNC_FILE_RANGE, WRITE_BEHIND_LAG, Partial

    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True)
    if _SYNC_FILE_RANGE is None or fs.stdout.strip() == "tmpfs":
        pytest.skip("needs Linux's sync_file_range on a disk-backed file system (tmpfs keeps all in memory)")
    store = BlobStore(tmp_path, durable=False)
    chunk = 64 * 1024
    data = scan_pdf() + os.urandom(40 * chunk)
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    partial = Partial(store, digest, len(pieces), chunk_size=chunk)
    for index, piece in enumerate(pieces):
        partial.write(index, piece)
    assert partial.hashed() == digest
    partial.close()
    cached = _cached_bytes(store.partial(digest))
    assert cached <= (WRITE_BEHIND_LAG + 1) * chunk, (
        f"{cached} bytes of a {len(data)}-byte material still in the page cache"
    )
    assert store.finish(digest, len(data)) == "pdf"
    assert store.path(digest).read_bytes() == data, "dropped from the cache, still on disk"
