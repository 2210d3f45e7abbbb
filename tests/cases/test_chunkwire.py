"""Material chunks on the wire: ordinary MaterialChunk encodings, read without copying the bytes."""

from __future__ import annotations

import os

import pytest

from federation.wire import WireError
from node.cases import chunkwire
from tongban_api.v1 import cases_pb2


@pytest.mark.parametrize("length", [0, 1, 127, 128, 16_383, 16_384, 1 << 20])
def test_what_encode_writes_any_protobuf_reads(length: int) -> None:
    data = os.urandom(length)
    parsed = cases_pb2.MaterialChunk.FromString(chunkwire.encode(7, data, 50 << 20, 50))
    assert (parsed.index, parsed.data, parsed.size, parsed.chunks) == (7, data, 50 << 20, 50)


def test_what_protobuf_writes_decode_reads_without_a_copy() -> None:
    data = os.urandom(1 << 20)
    raw = cases_pb2.MaterialChunk(index=3, data=data, size=(1 << 40) + 5, chunks=4).SerializeToString()
    chunk = chunkwire.decode(raw)
    assert (chunk.index, chunk.size, chunk.chunks) == (3, (1 << 40) + 5, 4)
    assert chunk.data == data
    assert chunk.data.obj is raw  # a view into the message, not a copy of the MiB


def test_fields_in_any_order_and_unknown_fields_are_read_as_protobuf_reads_them() -> None:
    data = b"%PDF-1.7 scan"
    known = cases_pb2.MaterialChunk(index=2, data=data, size=99, chunks=3).SerializeToString()
    # An unknown varint field 9, an unknown 64-bit field 10, an unknown 32-bit field 11 and an
    # unknown bytes field 12, then the known fields again (the last value of a field wins).
    unknown = b"\x48\x05" + b"\x51" + bytes(8) + b"\x5d" + bytes(4) + b"\x62\x02hi"
    raw = unknown + known
    assert cases_pb2.MaterialChunk.FromString(raw).data == data
    chunk = chunkwire.decode(raw)
    assert (chunk.index, bytes(chunk.data), chunk.size, chunk.chunks) == (2, data, 99, 3)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\x08", "inside a number"),
        (b"\x12\x05abc", "inside its data"),
        (b"\x0b", "wire type 3"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 64 bits"),
        (b"\x51" + bytes(3), "inside a field"),
    ],
)
def test_malformed_chunks_are_named(raw: bytes, says: str) -> None:
    with pytest.raises(WireError, match=says):
        chunkwire.decode(raw)
