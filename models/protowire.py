"""The protocol-buffer wire format, read without a schema: what TensorFlow's checkpoint index and Caffe's
``.caffemodel`` need (``models.tfcheckpoint``, ``models.caffemodel``).

Encoding (protobuf "Encoding" documentation): each field is a varint key ``number << 3 | wire type``; wire type 0 is
a varint, 1 a little-endian 64-bit value, 2 a length-delimited byte string (sub-messages, strings, packed repeated
numbers), 5 a little-endian 32-bit value.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint at ``pos`` -> (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end of its buffer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a serialized protobuf message: varints as int, length-delimited fields as
    bytes, fixed32/fixed64 as int (wire types 0, 2, 5, 1)."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 2:
            size, pos = varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"field {number} runs past the end of its message (truncated data)")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
        yield number, value
