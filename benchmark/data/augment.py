"""Training augmentation: the random crop and the symmetries each release draws, as pure functions of a generator.

Every draw comes from the item's own ``numpy.random.Generator`` (``PairedDataset`` seeds it from ``(seed, epoch,
index)``), in a fixed order: crop top, crop left, horizontal flip, vertical flip, transposition. ``flips`` therefore
draws exactly what it drew before ``dihedral`` existed, and a resumed run replays the same augmentations.
"""

from __future__ import annotations

import numpy as np

AUGMENTATIONS: dict[str, str] = {
    "none": "no augmentation",
    "hflip": "random horizontal flip (MIMO-UNet, MSFS-Net)",
    "flips": "random horizontal and vertical flips",
    "dihedral": "random horizontal flip, vertical flip and transposition: the 8 symmetries of the square (BasicSR's "
    "flip + rot90, used by NAFNet and HINet; MPRNet's 8-way flip/rotation augmentation)",
}
"""Training augmentations (``train.augment``); the values are what each one draws, with the recipes that use it."""


def crop_window(rng: np.random.Generator, height: int, width: int, size: int) -> tuple[slice, slice]:
    """A uniformly drawn ``size`` x ``size`` window of an ``height`` x ``width`` image (rows, columns)."""
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return np.s_[top : top + size], np.s_[left : left + size]


def augment(lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same random symmetry of ``mode`` (a key of :data:`AUGMENTATIONS`) to both (H, W, 3) images.

    Returns views (flips, transposition), not copies. ``dihedral`` needs square images.
    """
    if mode != "none" and rng.random() < 0.5:
        lq, gt = lq[:, ::-1], gt[:, ::-1]
    if mode in ("flips", "dihedral") and rng.random() < 0.5:
        lq, gt = lq[::-1], gt[::-1]
    if mode == "dihedral" and rng.random() < 0.5:
        lq, gt = lq.transpose(1, 0, 2), gt.transpose(1, 0, 2)
    return lq, gt
