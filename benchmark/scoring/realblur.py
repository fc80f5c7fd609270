"""RealBlur's official protocol (``evaluation_RealBlur_ecc.py``, rimchang/RealBlur): align, then masked scores.

The official script pins OpenCV 4.2 and scikit-image 0.17.2; this harness uses the installed versions, so ECC results
may differ in the last decimals.

Precision follows the official script, stage by stage:

- float32: the images (read as ``float32 / 255``), the intensity matching, ECC, both warps and the mask, because the
  script hands float32 arrays to cv2; the squared PSNR errors, which it then sums with ``dtype=np.float64``.
- float64: the SSIM map and the masked SSIM sums. scikit-image 0.17.2, which the script requires, converts its inputs
  with ``astype(np.float64)`` (``skimage/metrics/_structural_similarity.py`` lines 175-177 at v0.17.2) and returns a
  float64 map, so the mask product and its sums are float64 too. scikit-image >= 0.19 keeps float32 inputs in
  float32 (``_supported_float_type``); handing it the float32 arrays would compute the map in float32 and sum about
  0.5 million masked values in float32, which moves a dark RealBlur-R image's SSIM by about 1e-4
  (``tests/test_metrics.py``). The aligned arrays are therefore cast to float64 before ``structural_similarity``.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from benchmark.core.errors import HarnessError
from benchmark.scoring.metrics import MSE_FLOOR, check_pair

ECC_ITERATIONS = 100
ECC_GAUSS_FILTER = 5
REALBLUR_SSIM_PAD = int(3.5 * 1.5 + 0.5)
"""5: the radius of scikit-image's Gaussian window (truncate 3.5, sigma 1.5), cropped from the masked SSIM map."""


class AlignmentError(HarnessError, ValueError):
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
    Alignment and the squared errors are float32 and the PSNR sum float64, like the official script (which reads the
    PNGs as ``float32 / 255``); the SSIM map and its masked sums are float64, as scikit-image 0.17.2 computes them.

    Args:
        pred: restored image (3, H, W), RGB in [0, 1] (8-bit values under the harness's protocol).
        target: ground truth (3, H, W), RGB in [0, 1].

    Returns:
        ``(psnr_db, ssim)`` as Python floats.

    Raises:
        ValueError: bad shapes or values (as ``psnr``); ``AlignmentError`` when ECC does not converge.
    """
    from skimage.metrics import structural_similarity

    check_pair(pred.unsqueeze(0), target.unsqueeze(0))
    z = pred.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    x = target.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    zr, xr, cr = realblur_align(z, x)
    # Squared errors in float32, summed in float64, over the float32 mask's count: the official compute_psnr.
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    psnr_db = float(10 * np.log10(1.0 / max(err, MSE_FLOOR)))
    # float64 from here on, as scikit-image 0.17.2 computes (module docstring); the mask is exactly 0/1 either way.
    xr64, zr64, cr64 = xr.astype(np.float64), zr.astype(np.float64), cr.astype(np.float64)
    _, ssim_map = structural_similarity(
        xr64,
        zr64,
        channel_axis=-1,
        gaussian_weights=True,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    pad = REALBLUR_SSIM_PAD
    masked = (ssim_map * cr64)[pad:-pad, pad:-pad, :]
    valid = cr64[pad:-pad, pad:-pad, :]
    # Rows first, then columns: the official script's order of summation.
    ssim_value = float(np.mean(masked.sum(axis=0).sum(axis=0) / valid.sum(axis=0).sum(axis=0)))
    return psnr_db, ssim_value
