"""TLC's own local layers, written from the text of megvii-research/TLC@8e87983, for the bench to race ours against.

``basicsr/models/archs/local_arch.py``: ``AvgPool2d`` (l. 22-82) with ``fast_imp=False, auto_pad=True`` is a 2-D
integral image of the input in the input's dtype (``x.cumsum(dim=-1).cumsum_(dim=-2)``, a zero row and column in front),
four-corner window sums over ``min(h, k1) x min(w, k2)`` divided by the window's area, and centred replicate padding
back to h x w; ``LocalInstanceNorm2d`` (l. 86-112) normalises with that pool's ``E[x]`` and ``E[x^2] - E[x]^2`` (no
clamp), in the input's dtype. ``replace_layers`` (l. 115-130) swaps ``nn.AdaptiveAvgPool2d(1)`` and
``nn.InstanceNorm2d`` for them. Here :func:`as_release` takes a model already converted by
``benchmark.evaluation.tlc.to_local(..., fuse=False)`` (same windows) and swaps our local layers for these, so the
bench times the same networks with either implementation.
Never used for scoring.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.evaluation.tlc import LocalAvgPool2d, LocalInstanceNorm2d, LocalMeanConv2d

__all__ = ["as_release", "box_mean_errors", "integral_box_mean", "wake_zero_parameters"]


def integral_box_mean(x: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """TLC's ``AvgPool2d`` exact path on (N, C, H, W) ``x``: same shape and dtype out (module docstring)."""
    h, w = x.shape[-2:]
    s = F.pad(x.cumsum(dim=-1).cumsum_(dim=-2), (1, 0, 1, 0))
    k1, k2 = min(h, kernel_size[0]), min(w, kernel_size[1])
    out = (s[..., :-k1, :-k2] - s[..., :-k1, k2:] - s[..., k1:, :-k2] + s[..., k1:, k2:]) / (k1 * k2)
    oh, ow = out.shape[-2:]
    return F.pad(out, ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2), mode="replicate")


class _ReleaseAvgPool(nn.Module):
    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        return integral_box_mean(x, self.kernel_size)


class _ReleaseInstanceNorm(nn.Module):
    def __init__(self, local: LocalInstanceNorm2d) -> None:
        super().__init__()
        self.kernel_size, self.eps, self.affine = local.kernel_size, local.eps, local.affine
        self.weight, self.bias = local.weight, local.bias

    def forward(self, x: Tensor) -> Tensor:
        mean = integral_box_mean(x, self.kernel_size)
        var = integral_box_mean(x * x, self.kernel_size) - mean**2
        out = (x - mean) / (var + self.eps).sqrt()
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def as_release(local: nn.Module) -> nn.Module:
    """A copy of a ``to_local(..., fuse=False)``-converted model with TLC's own layers in place of ours (same windows,
    same weights). A fused pool (``LocalMeanConv2d``) has no layer-for-layer counterpart in TLC: ValueError."""
    if any(isinstance(m, LocalMeanConv2d) for m in local.modules()):
        raise ValueError("as_release needs TLC's layer-for-layer form: convert with to_local(..., fuse=False)")
    model = copy.deepcopy(local)
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, LocalAvgPool2d):
                setattr(parent, name, _ReleaseAvgPool(child.kernel_size))
            elif isinstance(child, LocalInstanceNorm2d):
                setattr(parent, name, _ReleaseInstanceNorm(child))
    return model


@torch.no_grad()
def wake_zero_parameters(model: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Give every all-zero parameter N(0, std) values, in place; returns ``model``.

    NAFNet initialises its layer scales (``beta``, ``gamma``) to zero, so a freshly built NAFNet's blocks are identities
    and its channel attention, TLC's target, never reaches the output: comparing two TLC implementations on it would
    compare nothing. Trained weights are never zero there.
    """
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.numel() and not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@torch.no_grad()
def box_mean_errors(shape: tuple[int, ...] = (1, 4, 720, 1280), kernel: tuple[int, int] = (384, 384)) -> dict:
    """Max |error| of float32 box means against the float64 exact ones: ours and TLC's, on one map (a level rising
    0 -> 8 across the width plus U(0, 1) noise, a full-resolution map of a 1280x720 frame, TLC's 384-px window)."""
    from benchmark.evaluation.tlc import box_mean

    g = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=g) + torch.linspace(0, 8, shape[-1])
    exact = box_mean(x.double(), kernel)
    return {
        "shape": list(shape),
        "kernel": list(kernel),
        "ours": (box_mean(x, kernel).double() - exact).abs().max().item(),
        "tlc": (integral_box_mean(x, kernel).double() - exact).abs().max().item(),
    }
