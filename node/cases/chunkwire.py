"""MaterialChunk (proto/tongban_api/v1/cases.proto) on the wire, without copying its MiB around.

The generated class copies a chunk's bytes when it is built, again when it is serialized, once
more when it is parsed and again when `data` is read: about 0.6 ms of a core per MiB here,
as much as hashing it. A material crossing between nodes is nearly all such bytes, so the
FetchMaterial stream has these two functions as its serializer and deserializer instead:

* `encode` lets protobuf serialize the small fields and appends the `data` field (tag, length,
  bytes) itself: one copy, and the result is an ordinary MaterialChunk encoding that any
  protobuf library reads;
* `decode` walks the fields of any valid MaterialChunk encoding and hands `data` back as a view
  into the received message: no copy at all. Fields it does not know are skipped, as protobuf
  does; malformed input raises WireError.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.wire import WireError
from tongban_api.v1 import cases_pb2

_DATA_TAG = (2 << 3) | 2  # field 2, length-delimited


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    data: memoryview
    size: int
    chunks: int


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(index: int, data: bytes | memoryview, size: int, chunks: int) -> bytes:
    """The serialized MaterialChunk of these fields."""
    head = cases_pb2.MaterialChunk(index=index, size=size, chunks=chunks).SerializeToString()
    return b"".join((head, bytes((_DATA_TAG,)), _varint(len(data)), data))


def _read_varint(raw: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(raw):
            raise WireError("material chunk ends inside a number")
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise WireError("material chunk holds a number longer than 64 bits")


def decode(raw: bytes) -> Chunk:
    """The fields of a serialized MaterialChunk; `data` is a view into `raw`."""
    view = memoryview(raw)
    numbers = {1: 0, 3: 0, 4: 0}
    data = view[0:0]
    position = 0
    while position < len(raw):
        key, position = _read_varint(raw, position)
        field, kind = key >> 3, key & 7
        if kind == 0:
            value, position = _read_varint(raw, position)
            if field in numbers:
                numbers[field] = value
        elif kind == 2:
            length, position = _read_varint(raw, position)
            if position + length > len(raw):
                raise WireError("material chunk ends inside its data")
            if field == 2:
                data = view[position : position + length]
            position += length
        elif kind in (1, 5):
            position += 8 if kind == 1 else 4
        else:
            raise WireError(f"material chunk holds field {field} of wire type {kind}, which it cannot have")
    if position != len(raw):
        raise WireError("material chunk ends inside a field")
    return Chunk(numbers[1] & 0xFFFFFFFF, data, numbers[3], numbers[4] & 0xFFFFFFFF)
