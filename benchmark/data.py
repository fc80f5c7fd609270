"""Paired (blurry, sharp) image datasets: discovery, validation, decoding and the training/test loader.

A split folder holds ``blur/`` and ``sharp/`` with identical file names::

    <root>/<split>/blur/<name>.png
    <root>/<split>/sharp/<name>.png

Every problem is reported as a :class:`DatasetError` that names the offending file or folder and says what to do.
Cheap checks (missing partners, unreadable headers, size and bit-depth mismatches) run when the pairs are listed,
from the image headers only; decoding errors (a truncated file) surface when an image is read, or up front with
``verify=True``.

Colour handling (the benchmarks' protocols are 8-bit RGB, and any silent conversion would change the data):

- RGB: used as is.
- Grayscale (``L``, ``1``): converted to RGB by replicating the channel.
- Palette (``P``) and grey + alpha (``LA``, ``PA``): expanded to RGB(A), then handled as RGB or RGBA.
- RGBA: the alpha channel is dropped when it is fully opaque; any transparency is rejected, since there is no
  right background to composite on.
- More than 8 bits per sample (``I;16``, ``I``, ``F``, 16-bit RGB PNG): rejected, as re-quantising would change the
  pixels the protocol scores. Pillow opens 16-bit RGB PNGs as 8-bit ``RGB``, so the raw mode is checked too.
- Anything else (``CMYK``, ``YCbCr``, ...): rejected.

Decode cache (``PairedDataset(..., cache=folder)``, :func:`build_cache`): training reads small random crops of large
PNGs, and decoding the whole PNG for every crop is the loader's bottleneck. With a cache folder, every image is decoded
once, by :func:`read_rgb` (so the colour rules and error messages are unchanged), into an uncompressed uint8 ``.npy``
file that items memory-map, reading only the pages a crop touches; items are bit-identical to the PNG path. The cost
is disk: a 1280x720 RGB image is 2.76 MB decoded, so GoPro's 2,103 training pairs (4,206 images) need about 11.6 GB.
The cache must live outside the dataset folder (a DVC output, whose hash any extra file would change)::

    <cache>/<split>/blur/<name>.npy     uint8 (H, W, 3), C order
    <cache>/<split>/blur/<name>.json    sidecar: the source's path, size and mtime, the shape, the .npy's identity
    <cache>/<split>/sharp/...           the same for the sharp images

An entry whose source changed, or whose files are missing, damaged or inconsistent, is silently decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "CacheStats",
    "DatasetError",
    "Pair",
    "PairedDataset",
    "build_cache",
    "dataset_fingerprint",
    "find_pairs",
    "read_rgb",
    "split_train_val",
]

# Lower-case suffixes of the image files a split may contain; anything else in blur/ or sharp/ is an error.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# Modes holding more than 8 bits per sample.
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32B", "I;32L"})
# Modes that reduce to 8-bit RGB(A) without changing any pixel value.
_ACCEPTED_MODES = frozenset({"RGB", "RGBA", "L", "1", "P", "LA", "PA"})
# Errors Pillow raises on corrupt data: zlib/decoder errors (OSError), bad chunks (SyntaxError), bad headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class DatasetError(ValueError):
    """A dataset folder or image that cannot be used; the message names the file or folder and the fix."""


@dataclass(frozen=True)
class Pair:
    """One (blurry, sharp) pair, as listed by :func:`find_pairs`.

    Attributes:
        name: The file stem, shared by both images (e.g. ``"GOPR0384_11_00_000001"``).
        blur: Path of the blurry image (the model input, ``lq``).
        sharp: Path of the sharp image (the target, ``gt``).
        height: Image height in pixels (both images have it).
        width: Image width in pixels.
    """

    name: str
    blur: Path
    sharp: Path
    height: int
    width: int


def _raw_modes(image: Image.Image) -> list[str]:
    """Returns the decoder raw modes of an opened image (e.g. ``"RGB;16B"``), read from its tile list."""
    modes = []
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        if isinstance(args, tuple) and args:
            args = args[0]
        if isinstance(args, str):
            modes.append(args)
    return modes


def _check_mode(path: Path, image: Image.Image) -> None:
    """Rejects high bit-depth and unsupported modes, from the header only."""
    deep = [m for m in _raw_modes(image) if ";16" in m or ";32" in m or m in _HIGH_DEPTH_MODES]
    if image.mode in _HIGH_DEPTH_MODES or deep:
        raise DatasetError(
            f"{path}: {image.mode} image with more than 8 bits per sample (raw mode {deep or image.mode}); the "
            "benchmark protocols score 8-bit images, so convert it to 8-bit RGB yourself (this loader will not "
            "silently re-quantise)"
        )
    if image.mode not in _ACCEPTED_MODES:
        raise DatasetError(
            f"{path}: unsupported image mode {image.mode!r}; convert it to 8-bit RGB (accepted modes: "
            f"{sorted(_ACCEPTED_MODES)})"
        )


def _open(path: Path) -> Image.Image:
    """Opens an image lazily (header only), mapping Pillow's errors to a DatasetError naming the file."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (UnidentifiedImageError, *_DECODE_ERRORS) as error:
        raise DatasetError(
            f"{path}: not a readable image ({error}); the file is corrupt or not an image, re-download or "
            "regenerate the dataset"
        ) from error


def _header(path: Path) -> tuple[int, int]:
    """Reads an image's (height, width) and checks its mode without decoding the pixels."""
    with _open(path) as image:
        _check_mode(path, image)
        width, height = image.size
    return height, width


def read_rgb(path: Path) -> np.ndarray:
    """Decodes an image file to 8-bit RGB, applying the colour rules of this module's docstring.

    Args:
        path: Image file.

    Returns:
        uint8 array (H, W, 3), values in [0, 255].

    Raises:
        DatasetError: If the file is unreadable, truncated or corrupt, transparent, or not 8-bit; the message
            names the file.
    """
    path = Path(path)
    with _open(path) as image:
        _check_mode(path, image)
        try:
            image.load()
        except _DECODE_ERRORS as error:
            raise DatasetError(
                f"{path}: cannot decode the image ({error}); the file is truncated or corrupt, re-download or "
                "regenerate the dataset"
            ) from error
        if image.mode in ("P", "PA", "LA"):
            # Palette transparency (tRNS) only shows up after expansion, so expand to RGBA and apply the RGBA rule.
            image = image.convert("RGBA")
        if image.mode == "RGBA":
            alpha = np.asarray(image.getchannel("A"))
            if alpha.min() < 255:
                raise DatasetError(
                    f"{path}: image has transparent pixels ({int((alpha < 255).sum())} with alpha < 255); there is "
                    "no right background to composite on, so save it as opaque RGB"
                )
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _list_images(folder: Path) -> dict[str, Path]:
    """Maps file name to path for the images of a blur/ or sharp/ folder, rejecting anything unexpected."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: folder not found; a split needs blur/ and sharp/ folders with identical file names "
            "(generate or fetch the dataset first, e.g. `dvc repro`)"
        )
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # .DS_Store, editor swap files: not data
        if not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(
                f"{entry}: unexpected entry in an image folder (expected image files with suffix in "
                f"{sorted(IMAGE_SUFFIXES)}); move it out of {folder}"
            )
        files[entry.name] = entry
    if not files:
        raise DatasetError(f"{folder}: folder has no images; generate or fetch the dataset again")
    return files


def find_pairs(split_dir: Path, *, verify: bool = False) -> list[Pair]:
    """Lists and checks the (blurry, sharp) pairs of one split folder.

    Reads only the image headers (cheap) to check that every image is readable, 8-bit, and that both images of a
    pair have the same size. With ``verify=True`` every image is also fully decoded, so a truncated or corrupt file
    fails here instead of mid-epoch.

    Args:
        split_dir: Folder holding ``blur/`` and ``sharp/`` (e.g. ``data/synthblur/test``).
        verify: Decode every image up front (slow on large datasets: reads all the pixels).

    Returns:
        The pairs, sorted by name.

    Raises:
        DatasetError: For a missing or empty folder, an unexpected entry, an image without its partner, two images
            with one stem, an unreadable or corrupt image, or a pair of different sizes; the message names the file
            or folder.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: split folder not found; generate or fetch the dataset first")
    blur_files = _list_images(split_dir / "blur")
    sharp_files = _list_images(split_dir / "sharp")
    for side, files, partner, other in (
        ("blur", blur_files, "sharp", sharp_files),
        ("sharp", sharp_files, "blur", blur_files),
    ):
        orphans = sorted(set(files) - set(other))
        if orphans:
            raise DatasetError(
                f"{files[orphans[0]]}: no file of the same name in {split_dir / partner} ({len(orphans)} unpaired "
                f"in {side}/: {orphans[:5]}); every image needs a partner with an identical name"
            )
    pairs = []
    stems: dict[str, Path] = {}
    for file_name in sorted(blur_files):
        blur, sharp = blur_files[file_name], sharp_files[file_name]
        stem = blur.stem
        if stem in stems:
            raise DatasetError(f"{blur}: same name as {stems[stem]} apart from the suffix; names must be unique")
        stems[stem] = blur
        blur_hw, sharp_hw = _header(blur), _header(sharp)
        if blur_hw != sharp_hw:
            raise DatasetError(
                f"{blur}: size {blur_hw[0]}x{blur_hw[1]} (HxW) differs from its partner {sharp} "
                f"({sharp_hw[0]}x{sharp_hw[1]}); a pair must be pixel-aligned, fix or remove it"
            )
        if verify:
            read_rgb(blur)
            read_rgb(sharp)
            for path in (blur, sharp):
                with _open(path) as image:
                    try:
                        image.verify()  # checks chunk CRCs, which decoding alone does not
                    except _DECODE_ERRORS as error:
                        raise DatasetError(f"{path}: corrupt image ({error}); re-download or regenerate it") from error
        pairs.append(Pair(name=stem, blur=blur, sharp=sharp, height=blur_hw[0], width=blur_hw[1]))
    return pairs


def split_train_val(pairs: Sequence[Pair], val_count: int) -> tuple[list[str], list[str]]:
    """Holds out the last ``val_count`` pairs of a train split, sorted by name, as the validation split.

    Taking the last names (not a random sample) keeps the split stable across machines and seeds; datasets name
    files by scene, so this holds out whole scenes when ``val_count`` matches a scene's crop count. The test split
    is never used for validation.

    Args:
        pairs: Pairs of the train split.
        val_count: Number of pairs to hold out, ``0 <= val_count < len(pairs)``.

    Returns:
        ``(train_names, val_names)``, each sorted by name.

    Raises:
        DatasetError: If ``val_count`` is negative or leaves no training pair.
    """
    names = sorted(pair.name for pair in pairs)
    if not 0 <= val_count < len(names):
        raise DatasetError(
            f"val_count={val_count} must be in [0, {len(names)}) for a train split of {len(names)} pairs"
        )
    cut = len(names) - val_count
    return names[:cut], names[cut:]


# --- decode cache ------------------------------------------------------------------------------------------------

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


def _temp_path(target: Path) -> Path:
    """A fresh temporary name next to ``target``: hidden (leading dot), with the pid and a random token."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _unwritable(folder: Path, error: OSError) -> DatasetError:
    return DatasetError(
        f"{folder}: cannot write the decode cache there ({error}); make the folder writable or free disk space, "
        "point paths.cache at another folder, or disable train.cache"
    )


def _write_entry(source: Path, npy: Path, sidecar: Path, shape: tuple[int, int, int]) -> tuple[dict[str, Any], int]:
    """Decodes ``source`` into the entry (``npy``, ``sidecar``); returns the source stamp and the bytes written.

    Each file is written under a temporary name in its own folder and then renamed over the target with
    ``os.replace``, which is atomic on POSIX: concurrent readers and builders see the old file or the new one, never
    a partial one. A cache file is never modified in place, which also matters to readers: a file truncated under a
    memory map kills the reading process with SIGBUS, while a replaced one stays mapped as it was. No fsync: after a
    crash, a short or empty file fails the size check and is decoded again.
    """
    # Stamp before decoding: a source rewritten while being decoded then mismatches its stamp and is decoded again.
    stamp = _source_stamp(source)
    image = read_rgb(source)  # raises the same DatasetError, naming the file, as the uncached path
    if image.shape != shape:
        raise DatasetError(
            f"{source}: decoded size {image.shape[0]}x{image.shape[1]} (HxW) differs from the size listed when the "
            f"dataset was opened ({shape[0]}x{shape[1]}); the file changed meanwhile, open the dataset again"
        )
    npy_temp, sidecar_temp = _temp_path(npy), _temp_path(sidecar)
    try:
        with open(npy_temp, "xb") as handle:
            np.save(handle, image, allow_pickle=False)
        npy_stat = os.stat(npy_temp)  # rename keeps the inode and mtime, so this identifies the file once renamed
        os.replace(npy_temp, npy)
        with open(sidecar_temp, "x", encoding="utf-8") as handle:
            json.dump(_entry_record(stamp, shape, npy_stat), handle, sort_keys=True)
        os.replace(sidecar_temp, sidecar)
    except OSError as error:
        raise _unwritable(npy.parent, error) from error
    finally:
        for temp in (npy_temp, sidecar_temp):
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)  # only left over after a failure; a renamed temp is already gone
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


def _build_cache(
    pairs: Sequence[Pair], cache: Path, split: str
) -> tuple[CacheStats, dict[tuple[str, str], dict[str, Any]]]:
    """:func:`build_cache`, also returning the source stamp each entry was checked or decoded against."""
    cache = Path(cache)
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
    removed = sum(_remove_stale_temps(folder) for folder in folders)

    jobs = []
    for pair in pairs:
        for side in _CACHE_SIDES:
            npy, sidecar = _entry_paths(cache, split, side, pair.name)
            jobs.append((side, pair.name, getattr(pair, side), npy, sidecar, (pair.height, pair.width, 3)))
    stamps: dict[tuple[str, str], dict[str, Any]] = {}
    misses = []
    for job in jobs:
        side, name, source, npy, sidecar, shape = job
        stamp = _source_stamp(source)
        if _entry_is_valid(npy, sidecar, stamp, shape):
            stamps[side, name] = stamp
        else:
            misses.append(job)

    # Refuse up front rather than fill the disk halfway through: a full GoPro train split is about 11.6 GB.
    def existing_size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    # 128: the .npy header np.save writes for these shapes. A stale entry's old file is replaced, freeing its space.
    needed = sum(max(0, 128 + math.prod(job[5]) - existing_size(job[3])) for job in misses)
    free = shutil.disk_usage(folders[0]).free
    if needed > free:
        raise DatasetError(
            f"{cache}: the decode cache needs {needed / 1e9:.2f} GB more for {len(misses)} images but only "
            f"{free / 1e9:.2f} GB are free; free disk space, point paths.cache at a bigger disk, or disable train.cache"
        )

    # Concurrent builders (DDP ranks) list the same misses at the same time. Starting each one at its own offset,
    # chosen from its pid, spreads them over different entries, and the re-check below turns what another builder
    # finished meanwhile into a hit, so the ranks share the decoding instead of all repeating it.
    if misses:
        start = random.Random(os.getpid()).randrange(len(misses))
        misses = misses[start:] + misses[:start]
    decoded = decoded_bytes = 0
    for side, name, source, npy, sidecar, shape in misses:
        stamps[side, name], written = _ensure_entry(source, npy, sidecar, shape)
        decoded += int(written > 0)
        decoded_bytes += written
    total_bytes = sum(existing_size(job[3]) for job in jobs)
    stats = CacheStats(
        entries=len(jobs),
        hits=len(jobs) - decoded,
        decoded=decoded,
        decoded_bytes=decoded_bytes,
        total_bytes=total_bytes,
        removed_temps=removed,
    )
    return stats, stamps


def build_cache(pairs: Sequence[Pair], cache: Path, split: str) -> CacheStats:
    """Makes sure every image of ``pairs`` is decoded into the cache folder; decodes only missing or stale entries.

    Layout: ``<cache>/<split>/<side>/<name>.npy`` holds the image as :func:`read_rgb` decodes it, an uncompressed
    uint8 array (H, W, 3) in C order, values in [0, 255], for ``side`` in ``blur`` and ``sharp``; the sidecar
    ``<name>.json`` next to it records the source's resolved path, size and ``st_mtime_ns``, the shape, and the
    ``.npy`` file's inode, size and mtime. An entry is valid when all of these match and the ``.npy`` header
    describes a complete array; anything else (a changed source, a missing, truncated or foreign ``.npy``, a
    garbled sidecar) is a miss, decoded again without a message. Files are written under hidden temporary names
    (``.<file>.<pid>.<token>.tmp``) and renamed into place atomically, so several processes may build the same cache
    at once and none reads a partial file; temporary files older than an hour (left by killed builders) are deleted.

    Args:
        pairs: Pairs to cache, as listed by :func:`find_pairs` (``<root>/<split>/blur/<file>``).
        cache: Cache folder for this dataset (e.g. ``cache/gopro``), created if missing; must lie outside the dataset
            root, which is never written to.
        split: Split name, the sub-folder of ``cache`` (e.g. ``"train"``).

    Returns:
        Counts of hits, decoded entries and bytes (see :class:`CacheStats`).

    Raises:
        DatasetError: For a corrupt or unreadable source image (as :func:`read_rgb`, naming the file); for a cache
            folder inside the dataset root, one that cannot be created or written, or a disk without room for the
            missing entries (naming the folder and the fix).
    """
    return _build_cache(pairs, cache, split)[0]


AUGMENTATIONS: dict[str, str] = {
    "none": "no augmentation",
    "hflip": "random horizontal flip (MIMO-UNet, MSFS-Net)",
    "flips": "random horizontal and vertical flips",
    "dihedral": "random horizontal flip, vertical flip and transposition: the 8 symmetries of the square (BasicSR's "
    "flip + rot90, used by NAFNet and HINet; MPRNet's 8-way flip/rotation augmentation)",
}
"""Training augmentations; the values are what each one draws, with the recipes that use it."""


class PairedDataset(torch.utils.data.Dataset):
    """(blurry, sharp) pairs of one split, as float tensors.

    Training mode (``crop_size`` set): a random ``crop_size`` window, the same in both images, then the ``augment``
    draws (see :data:`AUGMENTATIONS`). Test mode (``crop_size=None, augment="none"``): full images (batch size 1 when
    the sizes differ).

    Randomness is a pure function of ``(seed, epoch, index)``: item ``i`` of epoch ``e`` draws from
    ``np.random.default_rng((seed, e, i))``, so results do not depend on the number of workers, the order items
    are fetched in, or resuming mid-run. Call :meth:`set_epoch` before each epoch. DataLoader workers copy the
    dataset when an iterator is created, so do not use ``persistent_workers=True`` (the workers would keep the
    epoch they started with).

    Args:
        root: Dataset root (e.g. ``data/synthblur``).
        split: Split folder under root (``"train"`` or ``"test"``).
        crop_size: Side of the random square crop; ``None`` for full images.
        augment: A key of :data:`AUGMENTATIONS`; each recipe names the one its release used.
        seed: Seed of the crop and augmentation draws.
        names: Keep only these pairs, in this order (e.g. from :func:`split_train_val`); ``None`` keeps all.
        verify: Decode every image at construction (see :func:`find_pairs`).
        cache: Decode cache folder for this dataset (e.g. ``cache/gopro``), outside ``root``; ``None`` decodes the
            image files for every item. Construction decodes the missing or stale entries of the listed pairs (see
            :func:`build_cache`, whose result is kept in :attr:`cache_stats`), and items then memory-map them and
            copy out only the crop. Items are bit-identical either way.

    Raises:
        DatasetError: As :func:`find_pairs`; also for an unknown or duplicate name in ``names``, for a crop larger
            than an image (naming the file and both sizes), and as :func:`build_cache` (a corrupt image, an
            unwritable cache folder).
    """

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        crop_size: int | None,
        augment: str,
        seed: int = 0,
        names: Sequence[str] | None = None,
        verify: bool = False,
        cache: Path | None = None,
    ) -> None:
        pairs = find_pairs(Path(root) / split, verify=verify)
        if names is not None:
            by_name = {pair.name: pair for pair in pairs}
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise DatasetError(f"{Path(root) / split}: no pair named {unknown[:5]} (of {len(unknown)} requested)")
            if len(set(names)) != len(names):
                raise DatasetError(f"{Path(root) / split}: duplicate names in the requested subset")
            pairs = [by_name[n] for n in names]
        if crop_size is not None:
            if crop_size < 1:
                raise DatasetError(f"crop_size must be >= 1, got {crop_size}")
            for pair in pairs:
                if crop_size > min(pair.height, pair.width):
                    raise DatasetError(
                        f"{pair.blur}: crop_size {crop_size} is larger than the image ({pair.height}x{pair.width} "
                        "HxW); lower crop_size"
                    )
        if seed < 0:
            raise DatasetError(f"seed must be >= 0, got {seed}")
        if augment not in AUGMENTATIONS:
            raise DatasetError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        if augment == "dihedral" and crop_size is None:
            raise DatasetError("augment=dihedral transposes images and needs square crops (set crop_size)")
        self.pairs: list[Pair] = pairs
        self.split = split
        self.crop_size = crop_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache: Path | None = None if cache is None else Path(cache)
        self.cache_stats: CacheStats | None = None
        # Source stamps the cache entries were checked against; an item re-checks its entry when the source's differs.
        self._cache_stamps: dict[tuple[str, str], dict[str, Any]] = {}
        if self.cache is not None:
            self.cache_stats, self._cache_stamps = _build_cache(pairs, self.cache, split)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose crops and flips :meth:`__getitem__` draws.

        Args:
            epoch: Non-negative epoch index.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    @property
    def names(self) -> list[str]:
        """Pair names, in item order."""
        return [pair.name for pair in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Loads item ``index``.

        Returns:
            ``{"lq": blurry, "gt": sharp, "name": pair name}``; ``lq`` and ``gt`` are float32 tensors
            (3, H, W), RGB, in [0, 1], where (H, W) is the crop or the full image.
        """
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {len(self.pairs)} pairs")
        pair = self.pairs[index]
        if self.cache is None:
            lq, gt = read_rgb(pair.blur), read_rgb(pair.sharp)
        else:
            lq, gt = self._cached(pair, "blur"), self._cached(pair, "sharp")
        if lq.shape != gt.shape:
            # The headers matched at construction; a file replaced since then must not be scored misaligned.
            raise DatasetError(f"{pair.blur}: size {lq.shape[:2]} differs from {pair.sharp} {gt.shape[:2]}")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.crop_size is not None:
            top = int(rng.integers(0, lq.shape[0] - self.crop_size + 1))
            left = int(rng.integers(0, lq.shape[1] - self.crop_size + 1))
            window = np.s_[top : top + self.crop_size, left : left + self.crop_size]
            lq, gt = lq[window], gt[window]
        if self.cache is not None:
            # Copy the crop out of the memory maps (reading only its pages), so nothing returned keeps them open.
            lq, gt = np.array(lq, order="C"), np.array(gt, order="C")
        # Draw order is fixed (horizontal, vertical, transpose) so that "flips" draws exactly what it drew before
        # "dihedral" existed, and a resumed run replays the same augmentations.
        if self.augment != "none" and rng.random() < 0.5:
            lq, gt = lq[:, ::-1], gt[:, ::-1]
        if self.augment in ("flips", "dihedral") and rng.random() < 0.5:
            lq, gt = lq[::-1], gt[::-1]
        if self.augment == "dihedral" and rng.random() < 0.5:
            lq, gt = lq.transpose(1, 0, 2), gt.transpose(1, 0, 2)
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "name": pair.name}

    def _cached(self, pair: Pair, side: str) -> np.ndarray:
        """Memory-maps the cache entry of one image: read-only uint8 (H, W, 3), re-decoded first if stale."""
        assert self.cache is not None
        source: Path = getattr(pair, side)
        npy, sidecar = _entry_paths(self.cache, self.split, side, pair.name)
        shape = (pair.height, pair.width, 3)
        # One stat per image keeps the uncached path's behaviour of reading the file as it is now: a source
        # rewritten since construction is decoded again (concurrent workers do so atomically).
        stale = _source_stamp(source) != self._cache_stamps.get((side, pair.name))
        for attempt in range(2):
            if stale or attempt:
                self._cache_stamps[side, pair.name], _ = _ensure_entry(source, npy, sidecar, shape)
            try:
                image = np.load(npy, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                continue  # deleted or damaged since construction (a cleared cache): decode it again
            if image.dtype == np.uint8 and image.shape == shape:
                return image
        raise DatasetError(
            f"{npy}: decode cache entry unreadable even after rebuilding it; delete {self.cache} or disable train.cache"
        )


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) in [0, 255] -> float32 tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def dataset_fingerprint(root: Path) -> str:
    """Hashes a dataset's image files: the MLflow ``dataset hash`` tag.

    sha256 over every image file under ``root`` (suffix in :data:`IMAGE_SUFFIXES`, hidden files and folders
    skipped), in sorted relative-path order, of each relative POSIX path and the file's bytes. Metadata files such
    as ``synth.json`` are left out on purpose: they record package versions, which may change while the pixels,
    the only thing training and scoring read, do not.

    Args:
        root: Dataset root.

    Returns:
        64 hex characters.

    Raises:
        DatasetError: If ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; generate or fetch the dataset first")
    files = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not files:
        raise DatasetError(f"{root}: no image files; generate or fetch the dataset first")
    digest = hashlib.sha256()
    for relative in files:
        encoded = relative.encode("utf-8")
        # Length-prefix each field so (path, bytes) boundaries are unambiguous.
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
        data_hash = hashlib.sha256()
        with (root / relative).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                data_hash.update(block)
        digest.update(data_hash.digest())
    return digest.hexdigest()
