"""Full-reference image metrics: PSNR and SSIM on (N, 3, H, W) RGB batches in [0, 1], one score per image.

Pure functions, no I/O and no guessing: the caller states the protocol (quantisation, crop, colour space) and these
functions check that the inputs honour the contract instead of silently rescaling them.

SSIM filters its five local moments (x, y, x^2, y^2, xy) with a separable 11-tap Gaussian in float64
(``benchmark.scoring.gauss``: scipy on the CPU, 1-D convolutions on a GPU) one plane at a time through reused buffers,
and forms the map in place. On a 1280x720 pair that is 1.6x faster than scikit-image on one CPU thread (piq's 11x11
float64 ``conv2d``, used before, was 25x slower than scikit-image) and equal to its ``structural_similarity`` with
Gaussian weights (sigma 1.5) and population covariance, i.e. Wang et al.'s ``ssim_index.m``, to 1e-12
(``tests/test_metrics.py``; ``python -m benchmark.bench speed`` times both). Means go through :func:`mean_over`, so no
score depends on the number of threads.

PSNR is computed here, in float64, as ``10 log10(1 / mse)``, not with ``piq.psnr``: piq returns
``-10 log10(mse + 1e-8)``, which lowers every score by about ``4.34e-8 * 10 ** (psnr / 10)`` dB (1.4e-4 dB at
35 dB, 4e-4 dB at 40 dB, 2.8e-3 dB at 48 dB), so it would miss the 1e-4 parity with scikit-image on RealBlur-R, whose
scores reach 36-39 dB. The only deviation from scikit-image: the MSE is floored at 1e-10, so identical images score
100 dB instead of ``inf`` and batch means stay finite.

SDWNet's scoring (FlyEgle/SDWNet@8e30226 ``utils/calc_psnr_ssim_official.py`` l. 39-48) works in OpenCV's 8-bit
YCrCb: :func:`ycrcb_uint8` is ``cv2.cvtColor(img, COLOR_BGR2YCR_CB)`` on uint8 images in OpenCV's integer arithmetic
(equal to OpenCV 5.0.0 on all 2^24 colours), :func:`psnr_y` its PSNR on Y, and the ``ycrcb_sample`` SSIM variant
its sample-covariance Gaussian SSIM on the three YCrCb planes. ``tests/test_sdwnet_protocol.py`` checks both against
the release's own functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from benchmark.scoring import gauss

__all__ = [
    "MSE_FLOOR",
    "SSIM_VARIANTS",
    "check_pair",
    "psnr",
    "psnr_y",
    "quantize_uint8",
    "quantize_uint8_floor",
    "quantize_uint8_half_up",
    "ssim",
    "ycrcb_uint8",
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


def _check_type(name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"{name} must be an (N, 3, H, W) RGB batch, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {t.dtype}")


def _check_values(name: str, t: Tensor) -> None:
    # One pass for both bounds. NaN propagates into aminmax and fails both comparisons, so it lands in the error path.
    lo, hi = (v.item() for v in torch.aminmax(t))
    if lo >= 0.0 and hi <= 1.0:
        return
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    raise ValueError(
        f"{name} values must lie in [0, 1], got min {lo:.6g} and max {hi:.6g}; "
        "clamp/quantize network outputs (quantize_uint8) and scale 8-bit images by 1/255 first"
    )


def mean_over(t: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """``t.mean(dims)`` (all dimensions by default), independent of the number of threads on the CPU.

    torch splits a CPU reduction between its threads, so a float64 mean over a 1280x720 image changes in the last
    bits with ``torch.set_num_threads`` (measured: 1 vs 2 threads differ at 1e-16). numpy's pairwise sum runs on one
    thread in a fixed order, so a score does not depend on how many threads, or worker processes, computed it.
    """
    if t.device.type != "cpu":
        return t.mean() if dims is None else t.mean(dim=dims)
    return torch.as_tensor(np.mean(t.detach().numpy(), axis=dims))


def check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ValueError unless ``pred`` and ``target`` are same-shape (N, 3, H, W) float batches in [0, 1]."""
    for name, t in (("pred", pred), ("target", target)):
        _check_type(name, t)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    for name, t in (("pred", pred), ("target", target)):
        _check_values(name, t)


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
    mse = mean_over((pred.double() - target.double()).pow(2), (1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


_GRID_TOLERANCE = 1e-3
"""How far (in 0-255 units) a value may lie from the 8-bit grid: float32 ``k / 255`` is within 2e-5 of it."""

# OpenCV's fixed-point YCrCb (imgproc color_yuv: yuv_shift 14, R2Y 4899, G2Y 9617, B2Y 1868, YCRI 11682, YCBI 9241,
# CV_DESCALE(x, 14) = (x + 2^13) >> 14, chroma offset 128 << 14, saturate_cast<uchar>).
_YUV_SHIFT = 14
_R2Y, _G2Y, _B2Y = 4899, 9617, 1868
_YCRI, _YCBI = 11682, 9241


def ycrcb_uint8(x: Tensor, name: str = "image") -> Tensor:
    """OpenCV's 8-bit YCrCb of an RGB batch on the 8-bit grid, exactly as ``cv2.cvtColor`` computes it on uint8.

    ``cv2.cvtColor(bgr_uint8, cv2.COLOR_BGR2YCR_CB)`` (or ``COLOR_RGB2YCrCb`` on RGB; the same numbers) in OpenCV's
    integer arithmetic, with ``d(v) = (v + 2^13) >> 14`` (an arithmetic shift): ``Y = d(4899 R + 9617 G + 1868 B)``,
    ``Cr = d((R - Y) 11682 + 128 * 2^14)``, ``Cb = d((B - Y) 9241 + 128 * 2^14)`` from the rounded ``Y``, saturated
    to 0..255. That is the full-range BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cr = 0.713 (R - Y) + 128``,
    ``Cb = 0.564 (B - Y) + 128`` in 14-bit fixed point, rounded half up. Equal to OpenCV 5.0.0's ``cvtColor`` on
    every one of the 2^24 colours. Pure red, green, blue -> (Y, Cr, Cb) (76, 255, 85), (150, 21, 43), (29, 107, 255).

    Args:
        x: (N, 3, H, W) RGB float batch with values ``k / 255`` (what ``quantize_uint8`` and 8-bit images give).
        name: what ``x`` is called in error messages.

    Returns:
        (N, 3, H, W) float64 planes (Y, Cr, Cb) in OpenCV's channel order, integer values in 0..255 (not scaled).

    Raises:
        ValueError: ``x`` is not such a batch, or a value lies off the 8-bit grid (quantize first).
    """
    _check_type(name, x)
    _check_values(name, x)
    scaled = x.double() * 255.0
    levels = scaled.round()
    off = (scaled - levels).abs().max().item()
    if off > _GRID_TOLERANCE:
        raise ValueError(
            f"{name} is not on the 8-bit grid (a value lies {off:.3g} grey levels off it); OpenCV's YCrCb is computed "
            "on uint8 images: quantize (quantize_uint8) first"
        )
    r, g, b = levels.long().unbind(dim=1)
    half, delta = 1 << (_YUV_SHIFT - 1), 128 << _YUV_SHIFT
    y = (_R2Y * r + _G2Y * g + _B2Y * b + half) >> _YUV_SHIFT
    cr = (((r - y) * _YCRI + delta + half) >> _YUV_SHIFT).clamp(0, 255)
    cb = (((b - y) * _YCBI + delta + half) >> _YUV_SHIFT).clamp(0, 255)
    return torch.stack((y, cr, cb), dim=1).double()


def psnr_y(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR on the Y plane of OpenCV's 8-bit YCrCb (:func:`ycrcb_uint8`), data range 255.

    SDWNet's ``peak_signal_noise_ratio(sr_Y, hr_Y)`` on uint8 planes (FlyEgle/SDWNet@8e30226
    ``utils/calc_psnr_ssim_official.py`` l. 46): ``10 log10(255^2 / mse)`` in float64 with the MSE of the integer Y
    values; as :func:`psnr`, the MSE is floored at ``1e-10`` (in [0, 1] units), so identical images give 100 dB.

    Args:
        pred: restored batch (N, 3, H, W), RGB, values on the 8-bit grid in [0, 1].
        target: ground-truth batch of the same shape and range.

    Returns:
        (N,) float64 PSNR in dB, at most 100.

    Raises:
        ValueError: as :func:`psnr`, or values off the 8-bit grid.
    """
    check_pair(pred, target)
    y_pred = ycrcb_uint8(pred, "pred")[:, 0]
    y_target = ycrcb_uint8(target, "target")[:, 0]
    mse = mean_over((y_pred - y_target).pow(2), (1, 2))
    return 10.0 * torch.log10(255.0**2 / mse.clamp_min(MSE_FLOOR * 255.0**2))


def _check_window(variant: str, h: int, w: int) -> None:
    if min(h, w) < _GAUSSIAN_WINDOW:
        raise ValueError(
            f"ssim variant {variant!r} needs images of at least {_GAUSSIAN_WINDOW}x{_GAUSSIAN_WINDOW} pixels "
            f"(valid filtering with an {_GAUSSIAN_WINDOW}x{_GAUSSIAN_WINDOW} window), got {h}x{w}"
        )


def _moments_(x: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """(C, H, W) images -> ``out`` (5 C, H, W) filled with x, y, x^2, y^2, xy: the local moments SSIM filters."""
    c = x.shape[0]
    out[:c].copy_(x)
    out[c : 2 * c].copy_(y)
    torch.mul(x, x, out=out[2 * c : 3 * c])
    torch.mul(y, y, out=out[3 * c : 4 * c])
    torch.mul(x, y, out=out[4 * c :])
    return out


def _ssim_map_(m: Tensor, c1: float, c2: float, cov_norm: float = 1.0) -> Tensor:
    """SSIM map from the filtered moments (5 C, h, w) (ux, uy, uxx, uyy, uxy), computed in place: -> (C, h, w).

    Wang et al.'s ``((2 ux uy + C1)(2 vxy + C2)) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` in float64, with
    ``vx = cov_norm (uxx - ux^2)`` (``cov_norm = NP / (NP - 1)`` for scikit-image's sample covariance). In place
    because the 15 planes of a 1280x720 pair are 110 MB: temporaries would double the memory traffic. ``m`` is
    overwritten; the result is a view of its first C planes.
    """
    ux, uy, uxx, uyy, uxy = m.chunk(5)
    uxx.addcmul_(ux, ux, value=-1.0)  # vx / cov_norm
    uyy.addcmul_(uy, uy, value=-1.0)
    uxy.addcmul_(ux, uy, value=-1.0)
    uxx.add_(uyy).mul_(cov_norm).add_(c2)  # vx + vy + C2
    uxy.mul_(2.0 * cov_norm).add_(c2)  # 2 vxy + C2
    torch.mul(ux, ux, out=uyy).addcmul_(uy, uy).add_(c1)  # ux^2 + uy^2 + C1
    ux.mul_(uy).mul_(2.0).add_(c1)  # 2 ux uy + C1
    return ux.mul_(uxy).div_(uyy.mul_(uxx))


def _ssim_valid(pred: Tensor, target: Tensor, c1: float, c2: float, cov_norm: float = 1.0) -> Tensor:
    """Per-plane valid-window SSIM averaged over pixels, then planes: (N, C, H, W) float64 -> (N,).

    One plane at a time through two reused buffers (5, H, W): the CPU path then allocates nothing per plane.
    """
    n, c, h, w = pred.shape
    buf, scratch = gauss.planes("moments", 5, h, w, pred), gauss.planes("scratch", 5, h, w, pred)
    scores = pred.new_empty(n, c)
    for i in range(n):
        for j in range(c):
            moments = _moments_(pred[i, j : j + 1], target[i, j : j + 1], buf)
            scores[i, j] = mean_over(_ssim_map_(gauss.filter_valid_(moments, scratch), c1, c2, cov_norm))
    return mean_over(scores, (1,))


def _ssim_gaussian2d(pred: Tensor, target: Tensor) -> Tensor:
    """Wang et al.'s reference SSIM per channel, channels averaged: (N, 3, H, W) float64 in [0, 1] -> (N,)."""
    _check_window("gaussian2d", *pred.shape[-2:])
    return _ssim_valid(pred, target, 0.01**2, 0.03**2)  # data range 1


def _ssim_matlab3d(pred: Tensor, target: Tensor) -> Tensor:
    """MATLAB's ``ssim(A, ref)`` applied to H x W x 3 uint8 arrays: (N, 3, H, W) float64 in [0, 1] -> (N,)."""
    # MATLAB sees a 3-D volume: the colour axis is filtered like the spatial ones (depth 3, replicate padding). That
    # filter is a 3x3 mixing of the colour planes (gauss.depth_mixing), applied to the moments before the separable
    # 2-D filter. MATLAB works in 0..255 with C = (K * 255)^2; SSIM is invariant to that scaling, so [0, 1] and
    # C = K^2 give the same numbers (to 1e-15) without a scaled copy of the images.
    c1, c2 = 0.01**2, 0.03**2
    n, c, h, w = pred.shape
    mix = gauss.depth_mixing(c).tolist()
    buf, scratch = gauss.planes("moments", 5, h, w, pred), gauss.planes("scratch", 5, h, w, pred)
    scores = pred.new_zeros(n)
    for i in range(n):
        for d in range(c):
            moments = _mixed_moments_(pred[i], target[i], mix[d], buf)
            scores[i] += mean_over(_ssim_map_(gauss.filter_replicate_(moments, scratch), c1, c2)) / c
    return scores


def _mixed_moments_(x: Tensor, y: Tensor, weights: list[float], out: Tensor) -> Tensor:
    """``out`` (5, H, W) := the five moments of (C, H, W) images mixed over channels: ``sum_k weights[k] x_k`` etc."""
    mx, my, mxx, myy, mxy = out.unbind(0)
    out.zero_()
    for k, wk in enumerate(weights):
        xk, yk = x[k], y[k]
        mx.add_(xk, alpha=wk)
        my.add_(yk, alpha=wk)
        mxx.addcmul_(xk, xk, value=wk)
        myy.addcmul_(yk, yk, value=wk)
        mxy.addcmul_(xk, yk, value=wk)
    return out


def _ssim_ycrcb_sample(pred: Tensor, target: Tensor) -> Tensor:
    """SDWNet's SSIM on OpenCV's 8-bit YCrCb with sample covariance: (N, 3, H, W) float64 in [0, 1] -> (N,)."""
    _check_window("ycrcb_sample", *pred.shape[-2:])
    cov_norm = _GAUSSIAN_WINDOW**2 / (_GAUSSIAN_WINDOW**2 - 1)  # use_sample_covariance=True: NP / (NP - 1), NP = 121
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2  # data range 255 from the uint8 dtype
    return _ssim_valid(ycrcb_uint8(pred, "pred"), ycrcb_uint8(target, "target"), c1, c2, cov_norm)


SSIM_VARIANTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gaussian2d": _ssim_gaussian2d,
    "matlab3d": _ssim_matlab3d,
    "ycrcb_sample": _ssim_ycrcb_sample,
}
"""SSIM implementations by name. Each maps validated float64 (N, 3, H, W) batches in [0, 1] to (N,) scores and checks
its own size requirements (see ``ssim`` for what each computes)."""


def ssim(pred: Tensor, target: Tensor, variant: str = "gaussian2d") -> Tensor:
    """Per-image structural similarity.

    Variants:
        ``gaussian2d``: Wang et al.'s reference (``ssim_index.m``), i.e. skimage's ``structural_similarity`` with
        ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1``: an 11x11 Gaussian
        window (sigma 1.5), population covariance, K1 0.01, K2 0.03, valid filtering, mean over pixels, then over
        the three channels, in float64.
        ``matlab3d``: MATLAB's ``ssim(A, ref)`` on uint8 RGB arrays, as ``evaluate_GOPRO_HIDE.m`` (MPRNet, Restormer,
        MSFS-Net's ``psnr_ssim.m``) scores most of the MSFS-Net paper's Table 1: the H x W x 3 array is one volume,
        filtered by an 11x11x11 Gaussian (sigma 1.5, ``filtRadius = ceil(3 sigma)``) with replicate padding in all
        three dimensions, dynamic range 255 (K1 0.01, K2 0.03), population variances, and the mean over the whole
        same-size map. Any size works (no valid-filtering crop).
        ``ycrcb_sample``: SDWNet's (FlyEgle/SDWNet@8e30226 ``utils/calc_psnr_ssim_official.py`` l. 47)
        ``structural_similarity(sr, hr, multichannel=True, gaussian_weights=True, use_sample_covariance=True)`` on
        the uint8 (Y, Cr, Cb) planes of ``cv2.cvtColor(img, COLOR_BGR2YCR_CB)`` (:func:`ycrcb_uint8`; values must lie
        on the 8-bit grid): per plane, in 0-255 units, an 11x11 Gaussian window (sigma 1.5, truncate 3.5), local
        variances and covariance times the sample factor 121/120, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, the map
        cropped by 5 px and averaged; then the mean over the three planes. At least 11x11 pixels.

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
