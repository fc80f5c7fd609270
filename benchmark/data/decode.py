"""Decoding one image file to 8-bit RGB, with colour rules that never silently change a pixel the protocol scores.

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

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from benchmark.data.errors import DatasetError

# Lower-case suffixes of the image files a split may contain; anything else in blur/ or sharp/ is an error.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# Modes holding more than 8 bits per sample.
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32B", "I;32L"})
# Modes that reduce to 8-bit RGB(A) without changing any pixel value.
_ACCEPTED_MODES = frozenset({"RGB", "RGBA", "L", "1", "P", "LA", "PA"})
# Errors Pillow raises on corrupt data: zlib/decoder errors (OSError), bad chunks (SyntaxError), bad headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


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


def read_header(path: Path) -> tuple[int, int]:
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


def verify_image(path: Path) -> None:
    """Decode ``path`` fully and check its chunk CRCs (which decoding alone does not); raises ``DatasetError``."""
    read_rgb(path)
    with _open(path) as image:
        try:
            image.verify()
        except _DECODE_ERRORS as error:
            raise DatasetError(f"{path}: corrupt image ({error}); re-download or regenerate it") from error


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) in [0, 255] -> float32 tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
