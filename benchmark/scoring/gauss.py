"""Separable 11-tap Gaussian filtering (sigma 1.5) in float64, the work inside every SSIM variant.

Two backends with the same arithmetic (an 11-tap correlation along the rows, then along the columns, in float64):

- CPU tensors: ``scipy.ndimage.correlate1d`` on the tensors' memory (``Tensor.numpy`` shares it). scipy filters a
  contiguous axis with a symmetric kernel in 6 multiplications per output, in C; torch's float64 ``conv2d`` has no
  vectorised CPU kernel and is several times slower (``python -m benchmark.bench speed`` times our SSIM of a 1280x720
  pair against scikit-image's).
- Any other device (CUDA): two 1-D ``conv2d`` calls, which run on the device.

``valid`` filtering keeps only outputs whose window lies inside the image (what scikit-image's 5-px crop of its SSIM
map keeps, so its ``reflect`` border never matters); ``replicate`` filtering pads by repeating the edge (MATLAB's
``imgaussfilt3(..., 'Padding', 'replicate')`` and NAFNet's ``padding_mode='replicate'``), keeping the size.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RADIUS", "SIGMA", "depth_mixing", "filter_replicate_", "filter_valid_", "planes", "taps"]

SIGMA = 1.5
RADIUS = 5
"""scikit-image's ``truncate 3.5``: ``int(3.5 * 1.5 + 0.5) = 5``; MATLAB's ``ceil(3 * 1.5) = 5``: both 11 taps."""


def taps(dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """The 11 normalised taps ``exp(-x^2 / (2 sigma^2)) / sum``, x = -5..5 (scipy's ``_gaussian_kernel1d``,
    MATLAB's ``fspecial3('gaussian')`` marginal and OpenCV's ``getGaussianKernel(11, 1.5)``, equal to 1e-17)."""
    x = torch.arange(-RADIUS, RADIUS + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 / (SIGMA * SIGMA) * x**2)
    return w / w.sum()


def _scipy_taps() -> np.ndarray:
    return taps().numpy()


_WORKSPACE = threading.local()


def planes(slot: str, m: int, h: int, w: int, like: Tensor) -> Tensor:
    """A reused, uninitialised (m, h, w) float64 buffer on ``like``'s device, one per ``slot`` and thread.

    Reused on the CPU because a fresh 37 MB buffer is mapped from the OS page by page on first write, which cost about
    as much as filtering it (0.2 s of page faults per 1280x720 pair on this project's 2-core machine); each slot keeps
    only its latest shape, so a process holds at most two 1280x720 pairs' worth (74 MB). CUDA's caching allocator
    already reuses memory, so other devices get a fresh tensor.

    Rows are padded off a multiple of 256 bytes: the column pass reads one value per row, and with rows of 1280
    float64 values (10,240 bytes, GoPro's width) every read maps to the same few cache sets and the pass runs at half
    speed (38 ms against 17 ms for five 1280x720 planes, scipy 1.17, AMD EPYC). Three spare values per row avoid that.
    """
    spare = 3 if (w * 8) % 256 == 0 else 0
    if like.device.type != "cpu":
        return torch.empty(m, h, w + spare, dtype=torch.float64, device=like.device)[..., :w]
    cache = _WORKSPACE.__dict__
    buf = cache.get(slot)
    if buf is None or buf.shape != (m, h, w + spare):
        buf = cache[slot] = torch.empty(m, h, w + spare, dtype=torch.float64)
    return buf[..., :w]


def filter_valid_(planes: Tensor, scratch: Tensor) -> Tensor:
    """The 11x11 Gaussian's outputs whose window lies inside each plane: (M, H, W) -> (M, H - 10, W - 10) float64.

    On the CPU the result is a view into ``planes``, which is overwritten, and ``scratch`` (a tensor of the same
    shape) holds the row pass: no allocation, which matters because every fresh 100 MB buffer costs its page faults
    again. Elsewhere both stay untouched and the result is a new tensor.
    """
    r = RADIUS
    if planes.device.type != "cpu":
        w = taps(planes.dtype, planes.device)
        out = F.conv2d(planes.unsqueeze(1), w.view(1, 1, 1, -1))
        return F.conv2d(out, w.view(1, 1, -1, 1)).squeeze(1)
    from scipy import ndimage

    w, a, s = _scipy_taps(), planes.numpy(), scratch.numpy()
    # Rows (the contiguous axis) first, then columns on the already-cropped width: scipy's line buffers make the
    # strided column pass the slower one. The border rows and columns it computes are cropped, so mode is moot.
    ndimage.correlate1d(a, w, axis=-1, mode="constant", output=s)
    width = a.shape[-1] - 2 * r
    ndimage.correlate1d(s[..., r:-r], w, axis=-2, mode="constant", output=a[..., :width])
    return planes[:, r:-r, :width]


def filter_replicate_(planes: Tensor, scratch: Tensor) -> Tensor:
    """The 11x11 Gaussian with replicate (edge-repeating) padding: (M, H, W) -> (M, H, W) float64.

    Buffers as :func:`filter_valid_`: on the CPU the result is ``planes`` itself, overwritten.
    """
    if planes.device.type != "cpu":
        w = taps(planes.dtype, planes.device)
        padded = F.pad(planes.unsqueeze(1), (RADIUS,) * 4, mode="replicate")
        out = F.conv2d(padded, w.view(1, 1, 1, -1))
        return F.conv2d(out, w.view(1, 1, -1, 1)).squeeze(1)
    from scipy import ndimage

    w, a, s = _scipy_taps(), planes.numpy(), scratch.numpy()
    # scipy's "nearest" mode extends a line by its edge value: replicate padding.
    ndimage.correlate1d(a, w, axis=-1, mode="nearest", output=s)
    ndimage.correlate1d(s, w, axis=-2, mode="nearest", output=a)
    return planes


def depth_mixing(depth: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """The 11-tap Gaussian along an axis of length ``depth`` with replicate padding, as a (depth, depth) matrix.

    Output ``d`` is ``sum_k taps[k] * v[clamp(d + k - 5, 0, depth - 1)]``; collecting the taps that land on each input
    index gives ``M[d, c]``, so ``M @ v`` filters the axis. For MATLAB's RGB volumes (depth 3) the replicated edges
    dominate: rows (0.6330, 0.2130, 0.1540), (0.3670, 0.2660, 0.3670), (0.1540, 0.2130, 0.6330), each summing to 1.
    """
    w = taps(torch.float64)
    m = torch.zeros(depth, depth, dtype=torch.float64)
    for d in range(depth):
        for k in range(2 * RADIUS + 1):
            m[d, min(max(d + k - RADIUS, 0), depth - 1)] += w[k]
    return m.to(dtype=dtype, device=device)
