"""Tiled inference: a model run on overlapping square crops, the overlaps averaged, exactly as HINet's release does it.

HINet's GoPro and REDS test configs (``options/test/GoPro/HINet-GoPro.yml`` lines 43-44: ``grids: true``,
``crop_size: 256``) score crops instead of whole frames. The release's code is ``ImageRestorationModel`` in
``basicsr/models/image_restoration_model.py`` of megvii-model/HINet, commit
``4e7231543090e6280d03fac22b3bb6869a25dfad``: ``grids`` (lines 123-183) cuts the crops, ``test`` (lines 246-265) runs
the network on them, ``grids_inverse`` (lines 185-200) sums the predictions and divides by a count map. This module
re-implements it (no copied code); ``tests/test_tiles.py`` checks it against golden values that the release's own
methods produced.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["tile_positions", "tiled_forward"]


def _check_positive(**values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _axis_starts(size: int, tile: int) -> list[int]:
    """Crop starts along one axis of ``size`` pixels, as the release's ``grids`` loops (lines 131-169)."""
    n = (size - 1) // tile + 1
    # Integer ceiling; equals the release's math.ceil((size - tile) / (n - 1) - 1e-8) for any n - 1 < 1e8.
    step = tile if n == 1 else -(-(size - tile) // (n - 1))
    starts = []
    start = 0
    while start + tile < size:
        starts.append(start)
        start += step
    # The last crop is aligned to the border. An axis shorter than the tile gets 0, the whole axis; the release's
    # negative start size - tile means the same only if size <= tile / 2 (see tiled_forward).
    starts.append(max(size - tile, 0))
    return starts


def tile_positions(h: int, w: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners ``(i, j)`` (row, column) of the crops that cover an ``h`` x ``w`` image, row-major.

    The release's ``ImageRestorationModel.grids`` (megvii-model/HINet ``basicsr/models/image_restoration_model.py``
    lines 123-183 at commit ``4e7231543090e6280d03fac22b3bb6869a25dfad``; ``grids_inverse`` lines 185-200): an axis of
    ``size`` pixels gets ``n = (size - 1) // tile + 1`` crops, ``step = ceil((size - tile) / (n - 1))`` apart (``tile``
    if ``n == 1``), starting at 0; the first crop that would reach the border is moved to ``size - tile`` and ends the
    axis. Rows outer, columns inner, as the release. Crops overlap by at least 0 and at most ``tile - 1`` pixels.

    An axis shorter than ``tile`` gets the single start 0 (its crop is the whole axis); the release records
    ``size - tile < 0`` there (see :func:`tiled_forward`).

    Raises:
        ValueError: ``h``, ``w`` or ``tile`` is not a positive int.
    """
    _check_positive(h=h, w=w, tile=tile)
    cols = _axis_starts(w, tile)
    return [(i, j) for i in _axis_starts(h, tile) for j in cols]


def _check_input(x: object) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty (N, C, H, W) batch, got shape {tuple(x.shape)}")


def _tiled_one(model: Callable[[Tensor], Tensor], x: Tensor, tile: int, batch: int) -> Tensor:
    """:func:`tiled_forward` of one image (1, C, H, W)."""
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    positions = tile_positions(h, w, tile)
    total: Tensor | None = None
    count: Tensor | None = None
    for first in range(0, len(positions), batch):
        chunk = positions[first : first + batch]
        crops = torch.cat([x[..., i : i + th, j : j + tw] for i, j in chunk])
        pred = model(crops)
        if not isinstance(pred, Tensor) or pred.shape != crops.shape:
            got = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
            raise RuntimeError(f"model returned {got} for a crop batch of {tuple(crops.shape)}")
        if total is None:
            total = pred.new_zeros((1, pred.shape[1], h, w))
            count = pred.new_zeros((1, 1, h, w))
        for k, (i, j) in enumerate(chunk):
            total[..., i : i + th, j : j + tw] += pred[k]
            count[..., i : i + th, j : j + tw] += 1.0
    return total / count


def tiled_forward(model: Callable[[Tensor], Tensor], x: Tensor, tile: int, *, batch: int = 8) -> Tensor:
    """Run ``model`` on overlapping ``tile`` x ``tile`` crops of each image and average the overlapping predictions.

    For each image: crops at :func:`tile_positions`, fed to ``model`` ``batch`` crops per call in position order; each
    prediction is added into a sum image and 1 into a count map over its crop; the result is sum / count. Equal to the
    release's ``grids`` -> ``test`` -> ``grids_inverse`` (HINet ``image_restoration_model.py`` lines 123-265, commit
    ``4e7231543090e6280d03fac22b3bb6869a25dfad``) on every image the release handles, in the same order of additions.

    Differences from the release (none changes the result of a per-sample network):
        * Batching: the release feeds all crops of an image in one call (``max_minibatch`` defaults to the crop
          count; no HINet config sets it); here ``batch`` crops per call bounds the memory.
        * N > 1: the release asserts a batch of one image; here each image is tiled on its own.
        * Accumulation dtype: the release's sum and count are ``torch.zeros`` in the default dtype (float32); here
          they take the prediction's dtype and device, so float64 predictions are averaged in float64.
        * Axes shorter than ``tile``: here the crop spans the whole axis. The release slices from the negative start
          ``size - tile``, which Python's slicing clamps to 0 (the same crop) only if ``size <= tile / 2``; for
          ``tile / 2 < size < tile`` the slice wraps to ``[2 * size - tile, size)``, the rows (columns) before it get
          count 0 and the release returns NaN there (e.g. 200 x 120 with ``crop_size`` 256).
        * The release's unused options ``trans_num`` (flip/rotate ensembles) and ``random_crop_num`` are not provided.

    Args:
        model: maps a crop batch (B, C, th, tw) to a restoration of the same shape (a network returning several
            outputs must be wrapped to return the last, as the release's ``test`` takes ``pred[-1]``). Called as is:
            eval mode and ``torch.no_grad`` are the caller's.
        x: (N, C, H, W) batch, nominally RGB in [0, 1]; any size (crops are ``min(tile, H)`` x ``min(tile, W)``).
        tile: crop side (the release's ``crop_size``; 256 for GoPro).
        batch: crops per ``model`` call.

    Returns:
        (N, C, H, W) in the predictions' dtype, unclamped: the average of the predictions covering each pixel.

    Raises:
        ValueError: ``x`` is not a non-empty 4-D tensor, or ``tile`` / ``batch`` is not a positive int.
        RuntimeError: ``model`` returned something other than a tensor of its input's shape.
    """
    _check_input(x)
    _check_positive(tile=tile, batch=batch)
    return torch.cat([_tiled_one(model, x[n : n + 1], tile, batch) for n in range(x.shape[0])])
