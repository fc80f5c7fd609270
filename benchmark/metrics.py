"""Full-reference image metrics: PSNR and SSIM on (N, 3, H, W) RGB batches in [0, 1], one score per image.

Pure functions, no I/O and no guessing: the caller states the protocol (quantisation, crop, colour space) and these
functions check that the inputs honour the contract instead of silently rescaling them.

SSIM is computed by ``piq`` in float64: piq 0.8.0's ``ssim(downsample=False)`` reproduces scikit-image's
``structural_similarity`` with Gaussian weights (sigma 1.5) and population covariance, i.e. Wang et al.'s
``ssim_index.m``, to about 1e-14. ``tests/test_metrics.py`` checks both metrics against scikit-image.

PSNR is computed here, in float64, as ``10 log10(1 / mse)``, not with ``piq.psnr``: piq returns
``-10 log10(mse + 1e-8)``, which lowers every score by about ``4.34e-8 * 10 ** (psnr / 10)`` dB (1.4e-4 dB at
35 dB, 4e-4 dB at 40 dB, 2.8e-3 dB at 48 dB), so it would miss the 1e-4 parity with scikit-image on RealBlur-R, whose
scores reach 36-39 dB. The only deviation from scikit-image: the MSE is floored at 1e-10, so identical images score
100 dB instead of ``inf`` and batch means stay finite.
"""

from __future__ import annotations

from collections.abc import Callable

import piq
import torch
from torch import Tensor

__all__ = ["SSIM_VARIANTS", "psnr", "quantize_uint8", "ssim"]

_GAUSSIAN_WINDOW = 11
"""Side of Wang et al.'s Gaussian window (sigma 1.5); valid filtering needs at least this many pixels per side."""


def quantize_uint8(x: Tensor) -> Tensor:
    """Snap values to the 8-bit grid, as the papers do by saving outputs as PNGs before scoring.

    Clamps to [0, 1], then rounds ``x * 255`` to the nearest integer with ties to even (``torch.round``), the same rule
    as BasicSR's ``tensor2img`` (``numpy.round``) and skimage's ``img_as_ubyte`` (``numpy.rint``): 0.5/255 -> 0,
    1.5/255 -> 2/255. NaN stays NaN (the metrics reject it).

    Args:
        x: any-shape floating tensor, nominally in [0, 1] (network outputs may overshoot).

    Returns:
        A tensor of the same shape and dtype with values in {0, 1/255, ..., 1}.
    """
    return x.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ValueError unless ``pred`` and ``target`` are same-shape (N, 3, H, W) float batches in [0, 1]."""
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must be an (N, 3, H, W) RGB batch, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{name} is empty, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    for name, t in (("pred", pred), ("target", target)):
        # isfinite first: NaN compares false with both bounds and would slip through a min/max test.
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = t.min().item(), t.max().item()
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} values must lie in [0, 1], got min {lo:.6g} and max {hi:.6g}; "
                "clamp/quantize network outputs (quantize_uint8) and scale 8-bit images by 1/255 first"
            )


_MSE_FLOOR = 1e-10
"""Identical images would give an infinite PSNR; the floor caps it at 100 dB, far above any restoration's score."""


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image peak signal-to-noise ratio, data range 1, over all pixels and channels.

    ``10 log10(1 / max(mse, 1e-10))`` in float64: equal to scikit-image's ``peak_signal_noise_ratio`` except that
    identical images give 100 dB instead of ``inf`` (module docstring explains why not ``piq.psnr``).

    Args:
        pred: restored batch (N, 3, H, W), RGB, values in [0, 1].
        target: ground-truth batch of the same shape and range.

    Returns:
        (N,) float64 PSNR in dB, at most 100.

    Raises:
        ValueError: shapes differ, are not (N, 3, H, W), or values are non-finite or outside [0, 1].
    """
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(_MSE_FLOOR))


def _ssim_gaussian2d(pred: Tensor, target: Tensor) -> Tensor:
    """Wang et al.'s reference SSIM per channel, channels averaged: (N, 3, H, W) float64 in [0, 1] -> (N,)."""
    h, w = pred.shape[-2:]
    if min(h, w) < _GAUSSIAN_WINDOW:
        raise ValueError(
            f"ssim variant 'gaussian2d' needs images of at least {_GAUSSIAN_WINDOW}x{_GAUSSIAN_WINDOW} pixels "
            f"(valid filtering with an {_GAUSSIAN_WINDOW}x{_GAUSSIAN_WINDOW} window), got {h}x{w}"
        )
    # downsample=False: piq's default first average-pools by round(min(H, W) / 256), which Wang's later ssim.m does
    # but neither skimage nor the deblurring papers' Python scripts do (it inflates SSIM by ~0.03-0.09).
    return piq.ssim(pred, target, data_range=1.0, reduction="none", downsample=False)


SSIM_VARIANTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gaussian2d": _ssim_gaussian2d,
}
"""SSIM implementations by name. Each maps validated float64 (N, 3, H, W) batches in [0, 1] to (N,) scores and checks
its own size requirements. A new protocol (e.g. MATLAB's ``ssim`` on the H x W x 3 volume) is one more entry."""


def ssim(pred: Tensor, target: Tensor, variant: str = "gaussian2d") -> Tensor:
    """Per-image structural similarity.

    Variants:
        ``gaussian2d``: Wang et al.'s reference (``ssim_index.m``), i.e. skimage's ``structural_similarity`` with
        ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1``: an 11x11 Gaussian
        window (sigma 1.5), population covariance, K1 0.01, K2 0.03, valid filtering, mean over pixels, then over
        the three channels. Computed by ``piq.ssim(downsample=False)`` in float64.

    Args:
        pred: restored batch (N, 3, H, W), RGB, values in [0, 1].
        target: ground-truth batch of the same shape and range.
        variant: a key of ``SSIM_VARIANTS``.

    Returns:
        (N,) float64 SSIM; 1.0 for identical images.

    Raises:
        ValueError: unknown variant, bad shapes or values (as ``psnr``), or an image smaller than the window.
    """
    if variant not in SSIM_VARIANTS:
        raise ValueError(f"unknown ssim variant {variant!r}; known variants: {', '.join(sorted(SSIM_VARIANTS))}")
    _check_pair(pred, target)
    return SSIM_VARIANTS[variant](pred.double(), target.double())
