"""Read TensorFlow checkpoints (the V2 "tensor bundle" that ``tf.train.Saver`` writes) without TensorFlow.

A checkpoint ``<prefix>`` is two files (TensorFlow's ``core/util/tensor_bundle/tensor_bundle.cc``):

- ``<prefix>.index``: a LevelDB-format sorted table (``core/lib/io/table_builder.cc``), one entry per tensor name whose
  value is a serialized ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC-32C), plus the entry
  ``""`` holding the ``BundleHeaderProto`` (number of shards, endianness, version);
- ``<prefix>.data-<shard>-of-<shards>``: the tensors' raw little-endian bytes at those offsets.

``<prefix>.meta`` (the graph) is not needed. Only what a checkpoint of dense numeric tensors uses is read: a
partitioned variable (``slices``), a string tensor or a big-endian bundle is refused with a ``TFCheckpointError``
naming the tensor. Block and tensor checksums are verified, so a truncated or corrupt file is an error, never wrong
weights. The committed fixture ``tests/fixtures/tf_srn_tiny`` was written by TensorFlow itself (``tests/fixtures/
README.md``), and the test suite reads it against TensorFlow's own values.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.protowire import proto_fields, varint

TABLE_MAGIC = 0xDB4775248B80FB57
"""The last 8 bytes of a LevelDB table (``table/format.h`` kTableMagicNumber), little-endian."""

FOOTER_SIZE = 48
"""Two block handles (at most 20 bytes each) padded to 40, then the magic (``table/format.h`` Footer)."""

BLOCK_TRAILER = 5
"""After each block: a compression byte (0: none) and its masked CRC-32C (``table/format.h`` kBlockTrailerSize)."""

DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2"}
"""TensorFlow ``DataType`` enum values (``types.proto``) -> numpy dtypes; others (strings, bfloat16...) are refused."""


class TFCheckpointError(RuntimeError):
    """A TensorFlow checkpoint is missing, corrupt or uses a feature this reader does not read; the message names
    the file (and tensor)."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, the checksum LevelDB and TensorFlow use (pure Python: ~1 s per 10 MB)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Undo LevelDB's CRC masking (``util/crc32c.h`` Unmask): rotate right by 17 after subtracting the delta."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lies: ``BundleEntryProto`` (``tensor_bundle.proto``)."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool


def _entry(value: bytes) -> BundleEntry:
    fields = dict(dtype=1, shape=(), shard_id=0, offset=0, size=0, crc32c=0, sliced=False)
    for number, item in proto_fields(value):
        if number == 1:
            fields["dtype"] = item
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }
            fields["shape"] = tuple(
                next((int(s) for n, s in proto_fields(dim) if n == 1), 0) for n, dim in proto_fields(item) if n == 2
            )
        elif number in (3, 4, 5, 6):
            fields[("shard_id", "offset", "size", "crc32c")[number - 3]] = item
        elif number == 7:
            fields["sliced"] = True
    return BundleEntry(**fields)


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    """The checked contents of the table block at ``offset`` (``size`` bytes before its trailer)."""
    end = offset + size
    if end + BLOCK_TRAILER > len(data):
        raise TFCheckpointError(f"TensorFlow index {path} is truncated (a block ends past the file)")
    compression, masked = data[end], struct.unpack_from("<I", data, end + 1)[0]
    if compression != 0:
        raise TFCheckpointError(f"TensorFlow index {path} uses block compression {compression}; TF writes none")
    if crc32c(data[offset : end + 1]) != unmask_crc(masked):
        raise TFCheckpointError(f"TensorFlow index {path} is corrupt (block checksum mismatch at byte {offset})")
    return data[offset:end]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a table block: prefix-compressed keys, then the restart array (``table/block.cc``)."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 * (restarts + 1)
    pos, key = 0, b""
    while pos < limit:
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        length, pos = varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def read_index(path: Path) -> tuple[int, dict[str, BundleEntry]]:
    """Read ``<prefix>.index`` -> (number of data shards, tensor name -> entry)."""
    path = Path(path)
    if not path.is_file():
        raise TFCheckpointError(f"TensorFlow index {path} does not exist; place the checkpoint's .index file there")
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise TFCheckpointError(
            f"{path} is not a TensorFlow checkpoint index (no table footer): a truncated or a wrong file"
        )
    try:
        footer = data[len(data) - FOOTER_SIZE :]
        _, pos = varint(footer, 0)
        _, pos = varint(footer, pos)  # metaindex handle: TF writes no filters, nothing to read there
        index_offset, pos = varint(footer, pos)
        index_size, _ = varint(footer, pos)
        shards, entries = 1, {}
        for _, handle in _block_entries(_block(data, index_offset, index_size, path)):
            offset, pos = varint(handle, 0)
            size, _ = varint(handle, pos)
            for key, value in _block_entries(_block(data, offset, size, path)):
                if key == b"":  # BundleHeaderProto: num_shards = 1, endianness = 2 (0 little), version = 3
                    header = dict(proto_fields(value))
                    shards = header.get(1, 1)
                    if header.get(2, 0) != 0:
                        raise TFCheckpointError(f"TensorFlow index {path} is big-endian; only little-endian is read")
                else:
                    entries[key.decode()] = _entry(value)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as err:
        raise TFCheckpointError(f"TensorFlow index {path} is corrupt ({err}); download the checkpoint again") from err
    return shards, entries


def checkpoint_prefix(path: Path) -> Path:
    """The checkpoint prefix ``path`` names: ``<prefix>``, ``<prefix>.index``, or a folder holding exactly one
    ``*.index`` (or whose ``checkpoint`` file names the latest, as ``tf.train.Saver`` writes it)."""
    path = Path(path)
    if path.name.endswith(".index"):
        return path.with_name(path.name[: -len(".index")])
    if not path.is_dir():
        return path
    state = path / "checkpoint"
    if state.is_file():
        found = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(), re.MULTILINE)
        if found:
            return path / Path(found.group(1)).name
    indexes = sorted(path.glob("*.index"))
    if len(indexes) != 1:
        raise TFCheckpointError(
            f"TensorFlow checkpoint folder {path} holds {len(indexes)} .index files "
            f"({', '.join(p.name for p in indexes) or 'none'}); name the checkpoint prefix itself"
        )
    return indexes[0].with_name(indexes[0].name[: -len(".index")])


def is_tf_checkpoint(path: Path) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint (a prefix with its ``.index``, the ``.index``, or a folder
    holding one)."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.index"))
    return path.name.endswith(".index") or Path(f"{path}.index").is_file()


def read_tf_checkpoint(path: Path, *, skip: re.Pattern[str] | None = None) -> dict[str, np.ndarray]:
    """Every tensor of the TensorFlow checkpoint ``path`` names (``checkpoint_prefix``) -> name -> numpy array.

    ``skip``: names matching it are not read (optimiser slots such as ``.../Adam``, ``global_step``).
    """
    prefix = checkpoint_prefix(path)
    index = Path(f"{prefix}.index")
    shards, entries = read_index(index)
    data: dict[int, bytes] = {}
    tensors = {}
    for name, entry in sorted(entries.items()):
        if skip is not None and skip.search(name):
            continue
        if entry.sliced:
            raise TFCheckpointError(f"{index}: tensor {name!r} is a partitioned variable; not supported")
        if entry.dtype not in DTYPES:
            raise TFCheckpointError(f"{index}: tensor {name!r} has TensorFlow dtype {entry.dtype}, not a number type")
        if entry.shard_id not in data:
            shard = Path(f"{prefix}.data-{entry.shard_id:05d}-of-{shards:05d}")
            if not shard.is_file():
                raise TFCheckpointError(f"TensorFlow checkpoint data {shard} does not exist; place it beside {index}")
            data[entry.shard_id] = shard.read_bytes()
        raw = data[entry.shard_id][entry.offset : entry.offset + entry.size]
        dtype = np.dtype(DTYPES[entry.dtype])
        if len(raw) != entry.size or entry.size != dtype.itemsize * int(np.prod(entry.shape, dtype=np.int64)):
            raise TFCheckpointError(f"{index}: tensor {name!r} is truncated in its data file; download it again")
        if crc32c(raw) != unmask_crc(entry.crc32c):
            raise TFCheckpointError(f"{index}: tensor {name!r} fails its checksum: the data file is corrupt")
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
    return tensors
