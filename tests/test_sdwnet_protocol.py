"""SDWNet's own GoPro/HIDE scoring as protocol keys: ``psnr_on: y_ycrcb`` and the ``ycrcb_sample`` SSIM variant.

The release (FlyEgle/SDWNet@8e30226 ``utils/calc_psnr_ssim_official.py`` l. 39-48, ``main_sr_hr_pool``) reads both
PNGs with ``cv2.imread``, converts them with ``cv2.cvtColor(img, cv2.COLOR_BGR2YCR_CB)`` (uint8), and scores
``peak_signal_noise_ratio`` on the Y planes and ``structural_similarity(multichannel=True, gaussian_weights=True,
use_sample_covariance=True)`` on the three YCrCb planes.

Golden values (``GOLDEN``): the release's ``main_sr_hr_pool`` and ``main`` (identical results) run on the pairs of
``_pairs()`` written as PNGs the way its ``inference_ddp.py`` (l. 234-235) writes them (``cv2.cvtColor(RGB2BGR)``,
``cv2.imwrite``), with scikit-image 0.26.0, OpenCV 5.0.0, scipy 1.17.1, numpy 2.4.6. One shim: scikit-image 0.26 no
longer has ``multichannel=True``, replaced by its successor ``channel_axis=-1`` (the same per-channel loop and mean).
Driver in a scratch folder outside the repository; no release code is committed. Ours matches the PSNR bit for bit and
the SSIM to 1.5e-14 (separable valid convolution in torch vs ``scipy.ndimage.gaussian_filter``; summation order).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.core.errors import ConfigError
from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.metrics import psnr, psnr_y, ssim, ycrcb_uint8
from benchmark.scoring.protocol import score

SDWNET = ScoringProtocol(
    quantize="uint8",
    ssim_variant="ycrcb_sample",
    psnr_on="y_ycrcb",
    source="FlyEgle/SDWNet@8e30226 utils/calc_psnr_ssim_official.py l. 39-48",
)

GOLDEN = [
    # (PSNR on Y in dB, SSIM on YCrCb) per pair, from the release's main_sr_hr_pool (module docstring).
    (34.64944162521677, 0.9057962458301109),
    (34.420425787658715, 0.9014441355595157),
    (46.72930908046841, 0.9738975366818706),  # the flat dark pair: C1 and C2 dominate
]


def _pairs() -> tuple[np.ndarray, np.ndarray]:
    """(restored, ground truth): (3, 48, 64, 3) uint8 RGB each; two textured pairs and one flat, dark pair."""
    rng = np.random.default_rng(2021)
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256], axis=-1)
    hr = np.clip(base + rng.integers(-20, 21, (2, 48, 64, 3)), 0, 255).astype(np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-12, 13, (2, 48, 64, 3)), 0, 255).astype(np.uint8)
    dark_hr = np.full((1, 48, 64, 3), 2, dtype=np.uint8)
    dark_sr = (2 + rng.integers(0, 3, (1, 48, 64, 3))).astype(np.uint8)
    return np.concatenate([sr, dark_sr]), np.concatenate([hr, dark_hr])


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], as the data loader decodes PNGs."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


def test_pairs_are_the_golden_ones() -> None:
    sr, hr = _pairs()
    assert (int(sr.sum()), int(hr.sum())) == (2202600, 2193019)


def test_protocol_matches_the_release_golden_values() -> None:
    sr, hr = _pairs()
    scores = score(_tensor(sr), _tensor(hr), SDWNET)
    assert set(scores) == {"psnr", "ssim"}
    assert scores["psnr"].dtype == scores["ssim"].dtype == torch.float64
    for i, (golden_psnr, golden_ssim) in enumerate(GOLDEN):
        assert scores["psnr"][i].item() == pytest.approx(golden_psnr, abs=1e-10)
        assert scores["ssim"][i].item() == pytest.approx(golden_ssim, abs=1e-12)


def test_release_scoring_with_opencv_and_skimage_on_other_images() -> None:
    """The release's two calls, made live on other seeded pairs (cv2 and scikit-image are dependencies)."""
    rng = np.random.default_rng(7)
    hr = rng.integers(0, 256, (2, 23, 31, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-40, 41, hr.shape), 0, 255).astype(np.uint8)
    ours_psnr = psnr_y(_tensor(sr), _tensor(hr))
    ours_ssim = ssim(_tensor(sr), _tensor(hr), variant="ycrcb_sample")
    for i in range(2):
        a = cv2.cvtColor(np.ascontiguousarray(sr[i, ..., ::-1]), cv2.COLOR_BGR2YCR_CB)
        b = cv2.cvtColor(np.ascontiguousarray(hr[i, ..., ::-1]), cv2.COLOR_BGR2YCR_CB)
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(a[:, :, 0], b[:, :, 0]), abs=1e-10)
        ref = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, use_sample_covariance=True)
        assert ours_ssim[i].item() == pytest.approx(ref, abs=1e-12)


# --- OpenCV's 8-bit YCrCb ---------------------------------------------------------------------------------------


def _colours(step: int) -> np.ndarray:
    """Every ``step``-th of the 2^24 RGB colours as a (1, 4096 / ..., 4096, 3) uint8 image."""
    v = np.arange(0, 1 << 24, step, dtype=np.uint32)
    v = v[: len(v) // 4096 * 4096]
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)
    return rgb.reshape(1, -1, 4096, 3)


@pytest.mark.parametrize("step", [61, pytest.param(1, marks=pytest.mark.slow)])
def test_ycrcb_equals_opencv_on_uint8(step: int) -> None:
    rgb = _colours(step)
    ref = cv2.cvtColor(np.ascontiguousarray(rgb[0, ..., ::-1]), cv2.COLOR_BGR2YCR_CB)  # what the release calls
    assert np.array_equal(ref, cv2.cvtColor(rgb[0], cv2.COLOR_RGB2YCrCb))
    ours = ycrcb_uint8(_tensor(rgb))
    assert ours.dtype == torch.float64
    assert np.array_equal(ours[0].permute(1, 2, 0).numpy(), ref.astype(np.float64))


def test_ycrcb_known_answers() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [128, 128, 128]]], np.uint8)
    ycc = ycrcb_uint8(_tensor(rgb[None]))[0].permute(1, 2, 0).reshape(-1, 3).tolist()
    assert ycc == [[76, 255, 85], [150, 21, 43], [29, 107, 255], [255, 128, 128], [0, 128, 128], [128, 128, 128]]


def test_identical_images_score_100_db_and_1() -> None:
    sr, _ = _pairs()
    x = _tensor(sr)
    scores = score(x, x.clone(), SDWNET)
    assert scores["psnr"].tolist() == [100.0] * 3
    assert scores["ssim"].tolist() == pytest.approx([1.0] * 3, abs=1e-15)


def test_psnr_y_sees_only_luma() -> None:
    """A change that keeps Y (a Cr/Cb-only shift) costs nothing on Y, but RGB PSNR and YCrCb SSIM see it."""
    gt = torch.full((1, 3, 16, 16), 100 / 255, dtype=torch.float64)
    pred = gt.clone()
    pred[:, 0], pred[:, 2] = 103 / 255, 93 / 255  # 4899 * 3 = 14697 ~ 1868 * 7 = 13076: Y stays 100
    assert ycrcb_uint8(pred)[:, 0].eq(ycrcb_uint8(gt)[:, 0]).all()
    assert psnr_y(pred, gt).item() == 100.0
    assert psnr(pred, gt).item() < 40.0
    assert ssim(pred, gt, variant="ycrcb_sample").item() < 1.0


def test_off_grid_and_small_inputs_are_refused() -> None:
    x = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)  # 127.5 grey levels: not an 8-bit value
    with pytest.raises(ValueError, match="not on the 8-bit grid"):
        psnr_y(x, x)
    with pytest.raises(ValueError, match="not on the 8-bit grid"):
        ssim(x, x, variant="ycrcb_sample")
    small = torch.zeros(1, 3, 10, 64)
    with pytest.raises(ValueError, match=r"ycrcb_sample.*at least 11x11.*got 10x64"):
        ssim(small, small, variant="ycrcb_sample")
    assert psnr_y(small, small).tolist() == [100.0]


# --- the protocol keys ------------------------------------------------------------------------------------------


def test_protocol_check_and_describe() -> None:
    SDWNET.check("p")
    assert SDWNET.metrics == ("psnr", "ssim")
    text = SDWNET.describe()
    assert "PSNR on the Y of OpenCV's 8-bit YCrCb" in text and "`ycrcb_sample`" in text
    assert "PSNR on RGB" in ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d").describe()
    for bad in (
        ScoringProtocol(quantize="none", ssim_variant="gaussian2d", psnr_on="y_ycrcb"),
        ScoringProtocol(quantize="none", ssim_variant="gaussian2d", extra_ssim_variants=("ycrcb_sample",)),
    ):
        with pytest.raises(ConfigError, match="quantize other than none"):
            bad.check("p")


@pytest.mark.parametrize(
    "keys", [{"psnr_on": "y_ycrcb"}, {"ssim_variant": "ycrcb_sample"}, {"extra_ssim_variants": ("ycrcb_sample",)}]
)
def test_ecc_refuses_the_ycrcb_keys(keys: dict) -> None:
    protocol = ScoringProtocol(**{"quantize": "uint8", "ssim_variant": "gaussian2d", "align": "ecc", **keys})
    with pytest.raises(ConfigError, match="ecc"):
        protocol.check("p")
