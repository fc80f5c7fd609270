"""Write TensorFlow V2 checkpoints (tensor bundles) without TensorFlow, for tests: release layouts from random weights.

The writer mirrors what ``models/tfcheckpoint.py`` reads (a LevelDB table of ``BundleEntryProto`` values, one data
shard); that TensorFlow itself reads its output was checked once with ``tf.train.load_checkpoint`` (TensorFlow
2.21.0, in a scratch folder). Restart interval 1 (no shared key prefixes) is valid LevelDB, only less compact.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from models.tfcheckpoint import FOOTER_SIZE, TABLE_MAGIC, crc32c

DTYPE_CODES = {np.dtype("<f4"): 1, np.dtype("<f8"): 2, np.dtype("<i4"): 3, np.dtype("<i8"): 9}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int, *, fixed32: bool = False) -> bytes:
    if fixed32:
        return _varint(number << 3 | 5) + struct.pack("<I", payload)
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def mask_crc(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    restarts = restarts or [0]
    return bytes(body) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + struct.pack("<I", mask_crc(crc32c(block + b"\x00")))


def write_tf_checkpoint(prefix: Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Write ``<prefix>.index`` and ``<prefix>.data-00000-of-00001`` holding ``tensors`` (name -> array)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data, entries = bytearray(), []
    header = _field(1, 1) + _field(3, _field(1, 1))  # num_shards 1, little-endian (0, omitted), version producer 1
    entries.append((b"", header))
    for name in sorted(tensors):
        array = np.asarray(tensors[name])  # not ascontiguousarray: it makes scalars 1-d
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        shape = b"".join(_field(2, _field(1, int(d))) for d in array.shape)
        entry = (
            _field(1, DTYPE_CODES[array.dtype])
            + _field(2, shape)
            + _field(4, len(data))
            + _field(5, len(raw))
            + _field(6, mask_crc(crc32c(raw)), fixed32=True)
        )
        entries.append((name.encode(), entry))
        data += raw
    table = bytearray()
    data_block = _with_trailer(_block(entries))
    table += data_block
    meta_offset = len(table)
    meta = _with_trailer(_block([]))
    table += meta
    index_offset = len(table)
    handle = _varint(0) + _varint(len(data_block) - 5)
    index = _with_trailer(_block([(entries[-1][0], handle)]))
    table += index
    footer = _varint(meta_offset) + _varint(len(meta) - 5) + _varint(index_offset) + _varint(len(index) - 5)
    table += footer.ljust(FOOTER_SIZE - 8, b"\x00") + struct.pack("<Q", TABLE_MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(table))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


def to_slim(state: Mapping[str, torch.Tensor], scope: str = "g_net") -> dict[str, np.ndarray]:
    """This harness's state dict -> TF-slim variables as the releases save them (float32 kernels ``[kh, kw, in,
    out]`` or ``[kh, kw, out, in]`` for transposed convolutions: the inverse of ``models.tfops.from_slim``), plus the
    step counter ``Variable`` that ``tf.train.Saver`` files hold."""
    names = {"weight": "weights", "bias": "biases"}
    out: dict[str, np.ndarray] = {"Variable": np.array(523000, dtype="<i4")}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        array = value.detach().cpu().numpy()
        array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
        out[f"{scope}/{module.replace('.', '/')}/{names[kind]}"] = array.astype("<f4")
    return out
