"""A split folder's (blurry, sharp) pairs, checked from the image headers, and the validation hold-out.

A split folder holds ``blur/`` and ``sharp/`` with identical file names::

    <root>/<split>/blur/<name>.png
    <root>/<split>/sharp/<name>.png
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.decode import IMAGE_SUFFIXES, read_header, verify_image
from benchmark.data.errors import DatasetError


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
        blur_hw, sharp_hw = read_header(blur), read_header(sharp)
        if blur_hw != sharp_hw:
            raise DatasetError(
                f"{blur}: size {blur_hw[0]}x{blur_hw[1]} (HxW) differs from its partner {sharp} "
                f"({sharp_hw[0]}x{sharp_hw[1]}); a pair must be pixel-aligned, fix or remove it"
            )
        if verify:
            verify_image(blur)
            verify_image(sharp)
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


def select_pairs(pairs: Sequence[Pair], names: Sequence[str], where: Path) -> list[Pair]:
    """The pairs named ``names``, in that order; an unknown or repeated name is a ``DatasetError`` naming ``where``."""
    by_name = {pair.name: pair for pair in pairs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise DatasetError(f"{where}: no pair named {unknown[:5]} (of {len(unknown)} requested)")
    if len(set(names)) != len(names):
        raise DatasetError(f"{where}: duplicate names in the requested subset")
    return [by_name[n] for n in names]
