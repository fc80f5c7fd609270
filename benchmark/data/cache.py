"""The decode cache: every training image decoded once into an uncompressed uint8 ``.npy`` that items memory-map.

Training reads small random crops of large PNGs, and decoding the whole PNG for every crop is the loader's bottleneck.
:func:`build_cache` decodes every image once, by ``read_rgb`` (so the colour rules and error messages are unchanged),
and returns a :class:`DecodeCache` whose :meth:`~DecodeCache.read` memory-maps an entry, so a crop reads only the
pages it touches; items are bit-identical to the PNG path. Building is an explicit call (rank 0 of a torchrun job
builds, the others then find every entry ready), never a side effect of opening a dataset. The cost is disk: a
1280x720 RGB image is 2.76 MB decoded, so GoPro's 2,103 training pairs (4,206 images) need about 11.6 GB. The cache
must live outside the dataset folder (a DVC output, whose hash any extra file would change)::

    <cache>/<split>/blur/<name>.npy     uint8 (H, W, 3), C order
    <cache>/<split>/blur/<name>.json    sidecar: the source's path, size and mtime, the shape, the .npy's identity
    <cache>/<split>/sharp/...           the same for the sharp images

An entry whose source changed, or whose files are missing, damaged or inconsistent, is silently decoded again.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core import atomic
from benchmark.data.decode import read_rgb
from benchmark.data.errors import DatasetError
from benchmark.data.pairs import Pair

# Recorded in every sidecar; bump it when the layout or the sidecar fields change, so old entries read as misses.
_CACHE_FORMAT = 1
# The sides a pair is cached under, as folder names and Pair attributes.
_CACHE_SIDES = ("blur", "sharp")
# A builder writes a temporary file within seconds of creating it, so one this old belongs to a killed builder. Age
# is used rather than the pid in the name because a cache on a shared disk may be built from several machines.
_STALE_TEMP_SECONDS = 3600.0


@dataclass(frozen=True)
class CacheStats:
    """What :func:`build_cache` found and did for one split.

    Attributes:
        entries: Images checked (two per pair).
        hits: Entries found valid and left as they were (including ones a concurrent builder wrote meanwhile).
        decoded: Entries decoded and written, because they were missing, stale or damaged.
        decoded_bytes: Bytes of the ``.npy`` files written.
        total_bytes: Bytes of the checked entries' ``.npy`` files once built.
        removed_temps: Stale temporary files of killed builders deleted.
    """

    entries: int
    hits: int
    decoded: int
    decoded_bytes: int
    total_bytes: int
    removed_temps: int


def _entry_paths(cache: Path, split: str, side: str, name: str) -> tuple[Path, Path]:
    """The (``.npy``, sidecar ``.json``) paths of one cache entry."""
    folder = cache / split / side
    return folder / f"{name}.npy", folder / f"{name}.json"


def _source_stamp(path: Path) -> dict[str, Any]:
    """Identifies a source image's current version: its resolved path, size and modification time (ns)."""
    try:
        stat = os.stat(path)  # follows symlinks: DVC may link data files into its cache
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _npy_is_whole(path: Path, shape: tuple[int, int, int]) -> bool:
    """Checks from the header alone that a ``.npy`` file holds a complete C-order uint8 array of ``shape``."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(handle)
            else:
                return False  # np.save writes 1.0 (2.0 for huge headers); anything else was not written here
            data_offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError):
        return False  # missing, unreadable, or not a .npy file (read_magic and the header parser raise ValueError)
    array_shape, fortran_order, dtype = header
    # The size check catches a truncated file, which np.load(mmap_mode="r") would only reject at mapping time.
    return (
        tuple(array_shape) == shape
        and not fortran_order
        and dtype == np.uint8
        and size == data_offset + math.prod(shape) * dtype.itemsize
    )


def _entry_record(
    source_stamp: dict[str, Any], shape: tuple[int, int, int], npy_stat: os.stat_result
) -> dict[str, Any]:
    """The sidecar of an entry: the source version it was decoded from, its shape, and which .npy file holds it.

    The .npy file's inode, size and mtime tie the sidecar to the very file written with it: the two files are replaced
    one after the other, so concurrent builders can leave a sidecar next to another builder's array. Such a mismatch
    reads as a miss instead of pairing an array with the wrong source version.
    """
    return {
        "format": _CACHE_FORMAT,
        "source": source_stamp,
        "shape": list(shape),
        "dtype": "uint8",
        "npy": {"ino": npy_stat.st_ino, "size": npy_stat.st_size, "mtime_ns": npy_stat.st_mtime_ns},
    }


def _entry_is_valid(npy: Path, sidecar: Path, source_stamp: dict[str, Any], shape: tuple[int, int, int]) -> bool:
    """Whether an entry holds the current version of its source: sidecar, .npy identity and header all agree."""
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        npy_stat = os.stat(npy)
    except (OSError, ValueError):
        return False  # missing, unreadable or garbled sidecar (JSONDecodeError and UnicodeDecodeError are ValueErrors)
    return record == _entry_record(source_stamp, shape, npy_stat) and _npy_is_whole(npy, shape)


def _unwritable(folder: Path, error: OSError) -> DatasetError:
    return DatasetError(
        f"{folder}: cannot write the decode cache there ({error}); make the folder writable or free disk space, "
        "point paths.cache at another folder, or disable train.cache"
    )


def _write_entry(source: Path, npy: Path, sidecar: Path, shape: tuple[int, int, int]) -> tuple[dict[str, Any], int]:
    """Decodes ``source`` into the entry (``npy``, ``sidecar``); returns the source stamp and the bytes written.

    Each file is written by ``benchmark.core.atomic`` (a temporary name in its own folder, fsync, then ``os.replace``,
    atomic on POSIX): concurrent readers and builders see the old file or the new one, never a partial one. A cache
    file is never modified in place, which also matters to readers: a file truncated under a memory map kills the
    reading process with SIGBUS, while a replaced one stays mapped as it was.
    """
    # Stamp before decoding: a source rewritten while being decoded then mismatches its stamp and is decoded again.
    stamp = _source_stamp(source)
    image = read_rgb(source)  # raises the same DatasetError, naming the file, as the uncached path
    if image.shape != shape:
        raise DatasetError(
            f"{source}: decoded size {image.shape[0]}x{image.shape[1]} (HxW) differs from the size listed when the "
            f"dataset was opened ({shape[0]}x{shape[1]}); the file changed meanwhile, open the dataset again"
        )
    try:
        # The status of the file as written, before its rename: what the sidecar must describe, even if a concurrent
        # builder replaces the .npy right after.
        npy_stat = atomic.atomic_write(npy, lambda handle: np.save(handle, image, allow_pickle=False))
        atomic.write_text(sidecar, json.dumps(_entry_record(stamp, shape, npy_stat), sort_keys=True))
    except OSError as error:
        raise _unwritable(npy.parent, error) from error
    return stamp, npy_stat.st_size


def _ensure_entry(source: Path, npy: Path, sidecar: Path, shape: tuple[int, int, int]) -> tuple[dict[str, Any], int]:
    """Makes the entry hold the current version of ``source``; returns its stamp and the bytes decoded into it (0 when
    it was valid already)."""
    stamp = _source_stamp(source)
    if _entry_is_valid(npy, sidecar, stamp, shape):
        return stamp, 0
    return _write_entry(source, npy, sidecar, shape)


def _remove_stale_temps(folder: Path) -> int:
    """Deletes the temporary files that killed builders left in ``folder``; returns how many."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_SECONDS:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue  # renamed or removed by another builder meanwhile, or a read-only cache: readers ignore it
    return removed


@dataclass(frozen=True)
class _Job:
    """One image to cache: its side (``blur``/``sharp``), pair name, source file, entry files and shape."""

    side: str
    name: str
    source: Path
    npy: Path
    sidecar: Path
    shape: tuple[int, int, int]


def _prepare_folders(pairs: Sequence[Pair], cache: Path, split: str) -> tuple[list[Path], int]:
    """Create the split's cache folders (refusing one inside a dataset folder); returns them and the stale temporary
    files of killed builders removed from them."""
    folders = [cache / split / side for side in _CACHE_SIDES]
    # A Pair lives at <root>/<split>/blur/<file>: never write under <root>, a DVC output whose hash would change.
    for root in sorted({pair.blur.parent.parent.parent.resolve() for pair in pairs}):
        for folder in folders:
            if folder.resolve().is_relative_to(root):
                raise DatasetError(
                    f"{cache}: the decode cache must live outside the dataset folder {root} (a DVC output: any file "
                    "written there changes its hash); point paths.cache at another folder"
                )
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _unwritable(folder, error) from error
    return folders, sum(_remove_stale_temps(folder) for folder in folders)


def _existing_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _check_room(misses: Sequence[_Job], cache: Path, folder: Path) -> None:
    """Refuse up front rather than fill the disk halfway through: a full GoPro train split is about 11.6 GB."""
    # 128: the .npy header np.save writes for these shapes. A stale entry's old file is replaced, freeing its space.
    needed = sum(max(0, 128 + math.prod(job.shape) - _existing_size(job.npy)) for job in misses)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DatasetError(
            f"{cache}: the decode cache needs {needed / 1e9:.2f} GB more for {len(misses)} images but only "
            f"{free / 1e9:.2f} GB are free; free disk space, point paths.cache at a bigger disk, or disable train.cache"
        )


def _build_cache(
    pairs: Sequence[Pair], cache: Path, split: str
) -> tuple[CacheStats, dict[tuple[str, str], dict[str, Any]]]:
    """:func:`build_cache`, returning the counts and the source stamp each entry was checked or decoded against."""
    cache = Path(cache)
    folders, removed = _prepare_folders(pairs, cache, split)
    jobs = [
        _Job(
            side,
            pair.name,
            getattr(pair, side),
            *_entry_paths(cache, split, side, pair.name),
            (pair.height, pair.width, 3),
        )
        for pair in pairs
        for side in _CACHE_SIDES
    ]
    stamps: dict[tuple[str, str], dict[str, Any]] = {}
    misses = []
    for job in jobs:
        stamp = _source_stamp(job.source)
        if _entry_is_valid(job.npy, job.sidecar, stamp, job.shape):
            stamps[job.side, job.name] = stamp
        else:
            misses.append(job)
    _check_room(misses, cache, folders[0])

    # Concurrent builders (DDP ranks) list the same misses at the same time. Starting each one at its own offset,
    # chosen from its pid, spreads them over different entries, and the re-check in _ensure_entry turns what another
    # builder finished meanwhile into a hit, so the ranks share the decoding instead of all repeating it.
    if misses:
        start = random.Random(os.getpid()).randrange(len(misses))
        misses = misses[start:] + misses[:start]
    decoded = decoded_bytes = 0
    for job in misses:
        stamps[job.side, job.name], written = _ensure_entry(job.source, job.npy, job.sidecar, job.shape)
        decoded += int(written > 0)
        decoded_bytes += written
    stats = CacheStats(
        entries=len(jobs),
        hits=len(jobs) - decoded,
        decoded=decoded,
        decoded_bytes=decoded_bytes,
        total_bytes=sum(_existing_size(job.npy) for job in jobs),
        removed_temps=removed,
    )
    return stats, stamps


def build_cache(pairs: Sequence[Pair], cache: Path, split: str) -> DecodeCache:
    """Makes sure every image of ``pairs`` is decoded into the cache folder; decodes only missing or stale entries.

    Layout: ``<cache>/<split>/<side>/<name>.npy`` holds the image as :func:`read_rgb` decodes it, an uncompressed
    uint8 array (H, W, 3) in C order, values in [0, 255], for ``side`` in ``blur`` and ``sharp``; the sidecar
    ``<name>.json`` next to it records the source's resolved path, size and ``st_mtime_ns``, the shape, and the
    ``.npy`` file's inode, size and mtime. An entry is valid when all of these match and the ``.npy`` header
    describes a complete array; anything else (a changed source, a missing, truncated or foreign ``.npy``, a
    garbled sidecar) is a miss, decoded again without a message. Files are written under hidden temporary names
    (``.<file>.<random>.tmp``) and renamed into place atomically, so several processes may build the same cache
    at once and none reads a partial file; temporary files older than an hour (left by killed builders) are deleted.

    Args:
        pairs: Pairs to cache, as listed by :func:`find_pairs` (``<root>/<split>/blur/<file>``).
        cache: Cache folder for this dataset (e.g. ``cache/gopro``), created if missing; must lie outside the dataset
            root, which is never written to.
        split: Split name, the sub-folder of ``cache`` (e.g. ``"train"``).

    Returns:
        The cache of ``pairs``, with the counts of hits, decoded entries and bytes in ``stats``.

    Raises:
        DatasetError: For a corrupt or unreadable source image (as :func:`read_rgb`, naming the file); for a cache
            folder inside the dataset root, one that cannot be created or written, or a disk without room for the
            missing entries (naming the folder and the fix).
    """
    stats, stamps = _build_cache(pairs, cache, split)
    return DecodeCache(Path(cache), split, stats, stamps)


@dataclass
class DecodeCache:
    """A built decode cache of one split (from :func:`build_cache`); :meth:`read` gives an image's array.

    Attributes:
        folder: The dataset's cache folder (e.g. ``cache/gopro``).
        split: The split it caches (``train``).
        stats: What building found and did.
    """

    folder: Path
    split: str
    stats: CacheStats
    # Source stamps the entries were checked against; a read re-checks an entry when its source's stamp differs.
    _stamps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    def read(self, pair: Pair, side: str) -> np.ndarray:
        """Memory-maps the entry of one image: read-only uint8 (H, W, 3), re-decoded first if stale.

        Args:
            pair: A pair of the split.
            side: ``blur`` or ``sharp``.
        """
        source: Path = getattr(pair, side)
        npy, sidecar = _entry_paths(self.folder, self.split, side, pair.name)
        shape = (pair.height, pair.width, 3)
        # One stat per image keeps the uncached path's behaviour of reading the file as it is now: a source
        # rewritten since the cache was built is decoded again (concurrent workers do so atomically).
        stale = _source_stamp(source) != self._stamps.get((side, pair.name))
        for attempt in range(2):
            if stale or attempt:
                self._stamps[side, pair.name], _ = _ensure_entry(source, npy, sidecar, shape)
            try:
                image = np.load(npy, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                continue  # deleted or damaged since it was built (a cleared cache): decode it again
            if image.dtype == np.uint8 and image.shape == shape:
                return image
        raise DatasetError(
            f"{npy}: decode cache entry unreadable even after rebuilding it; delete {self.folder} or disable "
            "train.cache"
        )
