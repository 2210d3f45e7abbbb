"""A clerk's program uploads a material in pieces of whatever size it likes; the node stores
exactly the bytes announced and refuses, with what to do, an upload that does not match."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.api.client import ApiClient, ApiError
from node.home import Home
from tests.cases.support import WUJIANG, Hall, open_halls, scan_pdf
from tongban_api.v1 import cases_pb2

pytestmark = pytest.mark.e2e


@pytest.fixture
def wujiang(tmp_path: Path) -> Iterator[tuple[Hall, str]]:
    [hall] = open_halls(tmp_path, WUJIANG)
    try:
        yield hall, hall.node.json("clerk", "add", "上传", "--no-save")["token"]
    finally:
        hall.node.stop()


def upload(at: tuple[Hall, str], data: bytes, piece: int, announced: int | None = None) -> Any:
    hall, token = at

    def chunks() -> Iterator[cases_pb2.UploadChunk]:
        size = len(data) if announced is None else announced
        yield cases_pb2.UploadChunk(sha256=hashlib.sha256(data).hexdigest(), size=size, filename="档案.pdf")
        for offset in range(0, len(data), piece):
            yield cases_pb2.UploadChunk(data=data[offset : offset + piece])

    with ApiClient(Home(hall.node.home), clerk_token=token, timeout=60) as client:
        return client.call(client.cases.Upload, chunks())


def test_an_upload_in_pieces_of_any_size_stores_the_exact_bytes(wujiang: tuple[Hall, str]) -> None:
    data = scan_pdf("档案") + os.urandom(3 * (1 << 20) + 12345)
    ref = upload(wujiang, data, piece=100_000)
    assert (ref.size, ref.format) == (len(data), "pdf")
    home = wujiang[0].node.home
    assert (home / "blobs" / ref.sha256[:2] / ref.sha256).read_bytes() == data
    assert not list((home / "blobs" / "partial").iterdir()), "nothing left half-written"


def test_an_upload_short_of_its_announced_size_is_refused_and_the_node_keeps_serving(
    wujiang: tuple[Hall, str],
) -> None:
    data = scan_pdf("档案") + os.urandom(500_000)
    with pytest.raises(ApiError) as refused:
        upload(wujiang, data, piece=65_536, announced=len(data) + 10)
    assert refused.value.code.name == "INVALID_ARGUMENT"
    assert f"not the {len(data) + 10} bytes announced" in str(refused.value)
    assert upload(wujiang, data, piece=65_536).size == len(data), "the same file then uploads fine"
