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

import numpy as np
import piq
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SSIM_VARIANTS", "AlignmentError", "psnr", "quantize_uint8", "realblur_scores", "ssim"]

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
    _check_pair(pred, target)
    return SSIM_VARIANTS[variant](pred.double(), target.double())


# --- RealBlur's official protocol ---------------------------------------------------------------------------------

ECC_ITERATIONS = 100
ECC_GAUSS_FILTER = 5
REALBLUR_SSIM_PAD = int(3.5 * 1.5 + 0.5)
"""5: the radius of scikit-image's Gaussian window (truncate 3.5, sigma 1.5), cropped from the masked SSIM map."""


class AlignmentError(ValueError):
    """ECC alignment failed (no convergence or a degenerate image); the caller names the image."""


def realblur_align(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image_align`` of ``evaluation_RealBlur_ecc.py`` on float32 H x W x 3 arrays in [0, 1].

    Intensity matching ``zs = (sum(x z) / sum(z z)) z``; ECC homography of ``gray(zs)`` onto ``gray(x)``
    (``cv2.findTransformECC``, 100 iterations, eps 0, Gaussian pre-filter 5); cubic inverse warp of ``zs`` with
    reflected borders; a validity mask warped the same way with nearest interpolation and zero borders.

    Returns:
        ``(aligned prediction * mask, target * mask, mask)``, float32 H x W x 3.
    """
    import cv2

    z, x = pred.astype(np.float32), target.astype(np.float32)
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 0)
    try:
        _, warp = cv2.findTransformECC(
            cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
            np.eye(3, 3, dtype=np.float32),
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            ECC_GAUSS_FILTER,
        )
    except cv2.error as err:
        raise AlignmentError(f"ECC alignment failed: {str(err).strip().splitlines()[-1]}") from err
    h, w = x.shape[:2]
    zr = cv2.warpPerspective(
        zs, warp, (w, h), flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )
    cr = cv2.warpPerspective(
        np.ones_like(zs, dtype=np.float32),
        warp,
        (w, h),
        flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return zr * cr, x * cr, cr


def realblur_scores(pred: Tensor, target: Tensor) -> tuple[float, float]:
    """PSNR and SSIM of one image under RealBlur's official protocol (``evaluation_RealBlur_ecc.py``).

    After ``realblur_align``: PSNR ``10 log10(1 / (sum((x - z)^2) / sum(mask)))`` over the valid pixels; SSIM is
    scikit-image's full map (Gaussian weights, sigma 1.5, population covariance, data range 1) times the mask, the
    5-pixel border cropped, summed per channel and divided by the mask's sum, then averaged over the channels.
    Computed in float32 like the official script (which reads the PNGs as ``float32 / 255``).

    Args:
        pred: restored image (3, H, W), RGB in [0, 1] (8-bit values under the harness's protocol).
        target: ground truth (3, H, W), RGB in [0, 1].

    Returns:
        ``(psnr_db, ssim)`` as Python floats.

    Raises:
        ValueError: bad shapes or values (as ``psnr``); ``AlignmentError`` when ECC does not converge.
    """
    from skimage.metrics import structural_similarity

    _check_pair(pred.unsqueeze(0), target.unsqueeze(0))
    z = pred.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    x = target.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    zr, xr, cr = realblur_align(z, x)
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    psnr_db = float(10 * np.log10(1.0 / max(err, _MSE_FLOOR)))
    _, ssim_map = structural_similarity(
        xr,
        zr,
        channel_axis=-1,
        gaussian_weights=True,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    pad = REALBLUR_SSIM_PAD
    masked = (ssim_map * cr)[pad:-pad, pad:-pad, :]
    valid = cr[pad:-pad, pad:-pad, :]
    ssim_value = float(np.mean(masked.sum(axis=(0, 1)) / valid.sum(axis=(0, 1))))
    return psnr_db, ssim_value
