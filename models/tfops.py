"""TensorFlow-1 semantics the TensorFlow releases (SRN, PSS-NSC) depend on, in PyTorch.

- ``SameConv2d``: ``padding='SAME'`` as TensorFlow computes it. For a stride-2 convolution on an even size TF pads
  one pixel less at the top/left than at the bottom/right; PyTorch's symmetric ``padding`` would sample the input one
  pixel off, so the padding is computed per call.
- ``resize_bilinear_legacy``: ``tf.image.resize_images(..., method=0)`` of TF 1.x (``align_corners=False``,
  ``half_pixel_centers=False``): source coordinate ``dst * in / out`` (no half-pixel offset, unlike
  ``F.interpolate``), scale, coordinates and values in float32 as ``resize_bilinear_op.cc`` computes them. A 4x
  reduction is therefore plain subsampling of every 4th pixel (no averaging), as in the releases.
- ``from_slim``: a TF-slim checkpoint's ``<scope>/<module>/weights|biases`` -> this harness's ``<module>.weight|bias``,
  kernels ``[kh, kw, in, out]`` (``conv2d``) and ``[kh, kw, out, in]`` (``conv2d_transpose``) permuted to PyTorch's
  ``[out, in, kh, kw]`` and ``[in, out, kh, kw]`` (the same permutation, ``(3, 2, 0, 1)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.checkpoint import SKIP_TF, CheckpointError


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one axis -> (before, after): the total ``max((ceil(size / stride) - 1) *
    stride + kernel - size, 0)``, the odd pixel after (``tensorflow/core/framework/kernel_shape_util.cc``)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'SAME' padding (``same_padding``), recomputed for each input size."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(c_in, c_out, kernel_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


def same_conv_transpose(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """TF-slim's ``conv2d_transpose(kernel 4, stride 2, padding='SAME')``: output exactly 2x the input, which is
    PyTorch's transposed convolution with ``padding=1`` (TF pads the forward convolution 1 on each side)."""
    return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)


def _legacy_axis(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Lower/upper source indices and the interpolation weight of one axis, in float32 as TensorFlow does."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    pos = torch.arange(n_out, dtype=torch.float32) * scale
    lower = torch.floor(pos)
    upper = torch.clamp(torch.ceil(pos), max=n_in - 1)
    lerp = (pos - lower).to(device)
    return lower.long().to(device), upper.long().to(device), lerp


def resize_bilinear_legacy(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., H, W) -> (..., h, w): TF 1.x ``resize_images(method=BILINEAR)`` (see module docstring).

    Computed in float32 and cast back to ``x``'s dtype, as TensorFlow's ``ResizeBilinear`` reads any input as float32
    and returns float32; W is interpolated first, then H (``top + (bottom - top) * y_lerp``), TF's order of operations.
    So a float64 run reproduces TensorFlow's float64 graph of the release to rounding (parity tests: ~1e-15 relative).
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    src = x.float()
    y0, y1, ly = _legacy_axis(h, size[0], x.device)
    x0, x1, lx = _legacy_axis(w, size[1], x.device)
    rows0, rows1 = src[..., y0, :], src[..., y1, :]
    top = rows0[..., x0] + (rows0[..., x1] - rows0[..., x0]) * lx
    bottom = rows1[..., x0] + (rows1[..., x1] - rows1[..., x0]) * lx
    return (top + (bottom - top) * ly[:, None]).to(x.dtype)


SLIM_NAMES = {"weight": "weights", "bias": "biases"}
"""PyTorch parameter name -> TF-slim variable name."""


def from_slim(
    tensors: Mapping[str, np.ndarray], own: Mapping[str, Tensor], *, scope: str, source: str
) -> dict[str, Tensor]:
    """Map TF-slim variables under ``scope`` onto the state dict ``own`` (its keys and shapes), or raise.

    Every key of ``own`` must be found as ``<scope>/<key with / for .>`` with ``weights``/``biases`` for
    ``weight``/``bias``; every slim variable (other than ``SKIP_TF``) must be used. ``source`` names the file in
    errors.
    """
    state, used = {}, set()
    for key, target in own.items():
        module, _, kind = key.rpartition(".")
        name = f"{scope}/{module.replace('.', '/')}/{SLIM_NAMES[kind]}"
        if name not in tensors:
            raise CheckpointError(f"TensorFlow checkpoint {source} lacks {name!r} (for {key}); is it this model's?")
        value = torch.from_numpy(np.asarray(tensors[name]))
        value = value.permute(3, 2, 0, 1) if value.dim() == 4 else value
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(
                f"TensorFlow checkpoint {source}: {name!r} has shape {tuple(value.shape)} after conversion, the "
                f"model's {key} {tuple(target.shape)}; is it this model and variant?"
            )
        state[key] = value.to(target.dtype).contiguous()
        used.add(name)
    extra = sorted(n for n in tensors if n not in used and not SKIP_TF.search(n))
    if extra:
        raise CheckpointError(
            f"TensorFlow checkpoint {source} holds {len(extra)} variables this model does not have: "
            f"{', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}; is it this model and variant?"
        )
    return state
