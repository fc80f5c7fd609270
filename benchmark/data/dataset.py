"""The paired dataset the training loop, validation and evaluation read: (blurry, sharp) float tensors in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.augment import AUGMENTATIONS, augment, crop_window
from benchmark.data.cache import DecodeCache
from benchmark.data.decode import read_rgb, to_tensor
from benchmark.data.errors import DatasetError
from benchmark.data.pairs import Pair, find_pairs, select_pairs


class PairedDataset(torch.utils.data.Dataset):
    """(blurry, sharp) pairs of one split, as float tensors.

    Training mode (``crop_size`` set): a random ``crop_size`` window, the same in both images, then the ``augment``
    draws (``benchmark.data.augment``). Test mode (``crop_size=None, augment="none"``): full images (batch size 1
    when the sizes differ).

    Randomness is a pure function of ``(seed, epoch, index)``: item ``i`` of epoch ``e`` draws from
    ``np.random.default_rng((seed, e, i))``, so results do not depend on the number of workers, the order items
    are fetched in, or resuming mid-run. Call :meth:`set_epoch` before each epoch. DataLoader workers copy the
    dataset when an iterator is created, so do not use ``persistent_workers=True`` (the workers would keep the
    epoch they started with).

    Args:
        root: Dataset root (e.g. ``data/synthblur``).
        split: Split folder under root (``"train"`` or ``"test"``).
        crop_size: Side of the random square crop; ``None`` for full images.
        augment: A key of ``AUGMENTATIONS``; each recipe names the one its release used.
        seed: Seed of the crop and augmentation draws.
        names: Keep only these pairs, in this order (e.g. from ``split_train_val``); ``None`` keeps all.
        verify: Decode every image at construction (see ``find_pairs``).
        cache: A decode cache of this split, built beforehand (``benchmark.data.cache.build_cache``); items then
            memory-map its entries and copy out only the crop. ``None`` decodes the image files for every item. Items
            are bit-identical either way.

    Raises:
        DatasetError: As ``find_pairs``; also for an unknown or duplicate name in ``names``, a crop larger than an
            image (naming the file and both sizes), bad arguments, and a cache of another split.
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
        cache: DecodeCache | None = None,
    ) -> None:
        pairs = find_pairs(Path(root) / split, verify=verify)
        if names is not None:
            pairs = select_pairs(pairs, names, Path(root) / split)
        _check_arguments(pairs, crop_size, augment, seed)
        if cache is not None and cache.split != split:
            raise DatasetError(f"{cache.folder}: a decode cache of the {cache.split!r} split cannot serve {split!r}")
        self.pairs: list[Pair] = pairs
        self.split = split
        self.crop_size = crop_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = cache

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose crops and flips :meth:`__getitem__` draws (non-negative)."""
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
            lq, gt = self.cache.read(pair, "blur"), self.cache.read(pair, "sharp")
        if lq.shape != gt.shape:
            # The headers matched at construction; a file replaced since then must not be scored misaligned.
            raise DatasetError(f"{pair.blur}: size {lq.shape[:2]} differs from {pair.sharp} {gt.shape[:2]}")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.crop_size is not None:
            window = crop_window(rng, lq.shape[0], lq.shape[1], self.crop_size)
            lq, gt = lq[window], gt[window]
        if self.cache is not None:
            # Copy the crop out of the memory maps (reading only its pages), so nothing returned keeps them open.
            lq, gt = np.array(lq, order="C"), np.array(gt, order="C")
        lq, gt = augment(lq, gt, rng, self.augment)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "name": pair.name}


def _check_arguments(pairs: Sequence[Pair], crop_size: int | None, mode: str, seed: int) -> None:
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
    if mode not in AUGMENTATIONS:
        raise DatasetError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {mode!r}")
    if mode == "dihedral" and crop_size is None:
        raise DatasetError("augment=dihedral transposes images and needs square crops (set crop_size)")
