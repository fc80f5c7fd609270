"""Read Caffe's ``.caffemodel`` weights without Caffe: layer name -> its parameter blobs.

A ``.caffemodel`` is a serialized ``NetParameter`` (``src/caffe/proto/caffe.proto``; the field numbers below are
those of the release's own copy, zhjwustc/cvpr18_rnn_deblur_matcaffe@3e470fe, which are upstream Caffe's):
``layer = 100`` (``LayerParameter``: ``name = 1``, ``type = 2``, ``blobs = 7``) or, in files of Caffe before 2015,
``layers = 2`` (``V1LayerParameter``: ``name = 4``, ``blobs = 6``); each ``BlobProto`` holds ``shape = 7``
(``BlobShape``: packed ``dim = 1``) or the deprecated ``num/channels/height/width = 1..4``, and its values in
``data = 5`` (float32) or ``double_data = 8`` (float64), packed. Everything else (layer settings, ``diff``) is skipped:
the network itself is the model's code. The committed fixture ``tests/fixtures/caffe`` was serialized by the
``protobuf`` library from those message definitions (the serializer Caffe itself writes with): Caffe cannot be built
here (CUDA-era MatCaffe with custom layers).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from models.protowire import proto_fields, varint


class CaffeModelError(RuntimeError):
    """A ``.caffemodel`` is missing or corrupt; the message names the file (and layer)."""


def _packed(value: int | bytes, fmt: str) -> list[float]:
    if isinstance(value, bytes):  # packed = true: one length-delimited run
        return list(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))
    raw = struct.pack("<I" if fmt == "f" else "<Q", value)  # an unpacked element (wire type 5 or 1)
    return list(struct.unpack(f"<{fmt}", raw))


def _dims(value: int | bytes) -> list[int]:
    """``BlobShape.dim``: packed varints (or one unpacked varint)."""
    if isinstance(value, int):
        return [value]
    dims, pos = [], 0
    while pos < len(value):
        dim, pos = varint(value, pos)
        dims.append(dim)
    return dims


def _blob(buf: bytes) -> np.ndarray:
    shape: list[int] = []
    legacy = [0, 0, 0, 0]
    floats: list[float] = []
    doubles: list[float] = []
    for number, value in proto_fields(buf):
        if number == 7:
            shape = [d for n, v in proto_fields(value) if n == 1 for d in _dims(v)]
        elif number in (1, 2, 3, 4):
            legacy[number - 1] = value
        elif number == 5:
            floats += _packed(value, "f")
        elif number == 8:
            doubles += _packed(value, "d")
    values = np.asarray(doubles, dtype=np.float64) if doubles else np.asarray(floats, dtype=np.float32)
    if not shape:
        shape = [d for d in legacy if d] if any(legacy) else [len(values)]
    if int(np.prod(shape)) != values.size:
        raise ValueError(f"a blob of shape {tuple(shape)} holds {values.size} values")
    return values.reshape(shape)


def read_caffemodel(path: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs (for a convolution: weight (out, in, kh, kh), then bias (out,)), layers without blobs
    left out, in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise CaffeModelError(f"Caffe model {path} does not exist; place the release's .caffemodel there")
    layers: dict[str, list[np.ndarray]] = {}
    try:
        for number, value in proto_fields(path.read_bytes()):
            if number not in (100, 2) or not isinstance(value, bytes):
                continue
            name_field, blob_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = None, []
            for field, item in proto_fields(value):
                if field == name_field:
                    name = item.decode()
                elif field == blob_field:
                    blobs.append(_blob(item))
            if name is None:
                raise ValueError("a layer without a name")
            if blobs:
                if name in layers:
                    raise ValueError(f"layer {name!r} appears twice")
                layers[name] = blobs
    except (ValueError, struct.error, UnicodeDecodeError) as err:
        raise CaffeModelError(f"Caffe model {path} is corrupt or truncated ({err}); download it again") from err
    if not layers:
        raise CaffeModelError(f"{path} holds no layer with weights: is it a .caffemodel (not a .prototxt)?")
    return layers
