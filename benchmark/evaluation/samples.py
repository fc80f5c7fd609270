"""The few test images an evaluation run shows in MLflow: input | restoration | ground truth, side by side.

Pure (no I/O): :class:`SampleKeeper` is the ``keep`` hook of ``benchmark.scoring.loop.score_protocols`` and keeps the
first ``count`` images it sees (the loader's order: by name), each as one uint8 (H, 3 W + 2 gap, 3) strip of the
same centre crop of the three images. The restoration is clamped to [0, 1] and rounded to 8 bit, as its PNG would be.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.scoring.metrics import quantize_uint8

GAP = 4
"""White pixels between the three panels."""


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size`` x ``size`` crop of a (3, H, W) image (the whole side where it is shorter)."""
    h, w = image.shape[-2:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return image[..., top : top + size, left : left + size]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] (values outside clamped) -> (H, W, 3) uint8, rounded half to even (``quantize_uint8``)."""
    return (quantize_uint8(image.detach().double()) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def strip(lq: torch.Tensor, restored: torch.Tensor, gt: torch.Tensor, size: int) -> np.ndarray:
    """Input | restoration | ground truth (each (3, H, W) in [0, 1]), the same centre crop of each, as one image."""
    panels = [to_uint8(centre_crop(x, size)) for x in (lq, restored, gt)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


class SampleKeeper:
    """Keeps the strips of the first ``count`` images seen, by name, in the order seen."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self.strips: dict[str, np.ndarray] = {}

    def __call__(self, name: str, lq: torch.Tensor, restored: torch.Tensor, gt: torch.Tensor) -> None:
        if len(self.strips) < self.count:
            self.strips[name] = strip(lq, restored, gt, self.size)
