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
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MSE_FLOOR",
    "SSIM_VARIANTS",
    "check_pair",
    "psnr",
    "quantize_uint8",
    "quantize_uint8_floor",
    "quantize_uint8_half_up",
    "ssim",
]

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


def quantize_uint8_half_up(x: Tensor) -> Tensor:
    """Snap values to the 8-bit grid with ties up: ``floor(255 x + 0.5) / 255`` after clamping to [0, 1].

    The rule of torchvision's ``save_image`` since 0.3 (``mul(255).add_(0.5).clamp_(0, 255)`` then a truncating cast
    to uint8) and of MIMO-UNet's and MSFS-Net's saving (``pred + 0.5 / 255`` then ``to_pil_image``'s truncating
    ``mul(255).byte()``): 0.5/255 -> 1/255. Same shapes and dtype as :func:`quantize_uint8`.
    """
    return x.clamp(0.0, 1.0).mul(255.0).add(0.5).floor().clamp(0.0, 255.0).div(255.0)


def quantize_uint8_floor(x: Tensor) -> Tensor:
    """Truncate to the 8-bit grid: ``floor(255 x) / 255`` after clamping to [0, 1].

    torchvision 0.2's ``save_image`` (``mul(255).clamp(0, 255).byte()``), which DMPHN's test script (PyTorch 0.4 era)
    saved its results with: our ``dmphn_1_2_4`` output truncated this way equals the release's committed
    ``test_results`` PNG in every value. 254.9/255 -> 254/255.
    """
    return x.clamp(0.0, 1.0).mul(255.0).floor().div(255.0)


def check_pair(pred: Tensor, target: Tensor) -> None:
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


MSE_FLOOR = 1e-10
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
    check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


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


_MATLAB_SIGMA = 1.5
_MATLAB_RADIUS = 5
"""MATLAB ``ssim``: ``filtRadius = ceil(3 * 1.5) = 5``, i.e. an 11-tap Gaussian along every array dimension."""


def _gauss_taps(dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(-_MATLAB_RADIUS, _MATLAB_RADIUS + 1, dtype=dtype, device=device)
    taps = torch.exp(-(x**2) / (2 * _MATLAB_SIGMA**2))
    return taps / taps.sum()


def _gauss3d_replicate(volume: Tensor) -> Tensor:
    """Separable 11x11x11 Gaussian (sigma 1.5) of (N, 1, D, H, W) with replicate padding, same size out."""
    r = _MATLAB_RADIUS
    padded = F.pad(volume, (r, r, r, r, r, r), mode="replicate")
    taps = _gauss_taps(volume.dtype, volume.device)
    out = F.conv3d(padded, taps.view(1, 1, -1, 1, 1))
    out = F.conv3d(out, taps.view(1, 1, 1, -1, 1))
    return F.conv3d(out, taps.view(1, 1, 1, 1, -1))


def _ssim_matlab3d(pred: Tensor, target: Tensor) -> Tensor:
    """MATLAB's ``ssim(A, ref)`` applied to H x W x 3 uint8 arrays: (N, 3, H, W) float64 in [0, 1] -> (N,)."""
    # MATLAB sees a 3-D volume: the colour axis is filtered like the spatial ones (depth 3, replicate padding).
    x = pred.mul(255.0).unsqueeze(1)
    y = target.mul(255.0).unsqueeze(1)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_x, mu_y = _gauss3d_replicate(x), _gauss3d_replicate(y)
    var_x = _gauss3d_replicate(x * x) - mu_x**2
    var_y = _gauss3d_replicate(y * y) - mu_y**2
    cov = _gauss3d_replicate(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3, 4))


SSIM_VARIANTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gaussian2d": _ssim_gaussian2d,
    "matlab3d": _ssim_matlab3d,
}
"""SSIM implementations by name. Each maps validated float64 (N, 3, H, W) batches in [0, 1] to (N,) scores and checks
its own size requirements (see ``ssim`` for what each computes)."""


def ssim(pred: Tensor, target: Tensor, variant: str = "gaussian2d") -> Tensor:
    """Per-image structural similarity.

    Variants:
        ``gaussian2d``: Wang et al.'s reference (``ssim_index.m``), i.e. skimage's ``structural_similarity`` with
        ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1``: an 11x11 Gaussian
        window (sigma 1.5), population covariance, K1 0.01, K2 0.03, valid filtering, mean over pixels, then over
        the three channels. Computed by ``piq.ssim(downsample=False)`` in float64.
        ``matlab3d``: MATLAB's ``ssim(A, ref)`` on uint8 RGB arrays, as ``evaluate_GOPRO_HIDE.m`` (MPRNet, Restormer,
        MSFS-Net's ``psnr_ssim.m``) scores most of the MSFS-Net paper's Table 1: the H x W x 3 array is one volume,
        filtered by an 11x11x11 Gaussian (sigma 1.5, ``filtRadius = ceil(3 sigma)``) with replicate padding in all
        three dimensions, dynamic range 255 (K1 0.01, K2 0.03), population variances, and the mean over the whole
        same-size map. Any size works (no valid-filtering crop).

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
    check_pair(pred, target)
    return SSIM_VARIANTS[variant](pred.double(), target.double())
