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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetError",
    "Pair",
    "PairedDataset",
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

    Raises:
        DatasetError: As :func:`find_pairs`; also for an unknown or duplicate name in ``names``, and for a crop
            larger than an image (naming the file and both sizes).
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
        self.crop_size = crop_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

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
        lq, gt = read_rgb(pair.blur), read_rgb(pair.sharp)
        if lq.shape != gt.shape:
            # The headers matched at construction; a file replaced since then must not be scored misaligned.
            raise DatasetError(f"{pair.blur}: size {lq.shape[:2]} differs from {pair.sharp} {gt.shape[:2]}")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.crop_size is not None:
            top = int(rng.integers(0, lq.shape[0] - self.crop_size + 1))
            left = int(rng.integers(0, lq.shape[1] - self.crop_size + 1))
            window = np.s_[top : top + self.crop_size, left : left + self.crop_size]
            lq, gt = lq[window], gt[window]
        # Draw order is fixed (horizontal, vertical, transpose) so that "flips" draws exactly what it drew before
        # "dihedral" existed, and a resumed run replays the same augmentations.
        if self.augment != "none" and rng.random() < 0.5:
            lq, gt = lq[:, ::-1], gt[:, ::-1]
        if self.augment in ("flips", "dihedral") and rng.random() < 0.5:
            lq, gt = lq[::-1], gt[::-1]
        if self.augment == "dihedral" and rng.random() < 0.5:
            lq, gt = lq.transpose(1, 0, 2), gt.transpose(1, 0, 2)
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "name": pair.name}


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
