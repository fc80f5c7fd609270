"""PSNR/SSIM: parity with scikit-image on real photos, known answers, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.scoring.metrics import SSIM_VARIANTS, psnr, quantize_uint8, ssim
from benchmark.scoring.realblur import AlignmentError, realblur_align, realblur_scores
from benchmark.tools.bench_speed import frame_pair


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round a float array on the 0..255 scale to uint8, as saving a PNG does."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _to_tensor(*images: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 arrays of one size -> (N, 3, H, W) float64 in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255.0


def _sk_ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """Wang et al.'s reference settings in scikit-image."""
    return structural_similarity(
        gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )


def _degradations(gt: np.ndarray, seed: int) -> list[np.ndarray]:
    """Blurred and noisy uint8 versions of an H x W x 3 uint8 image."""
    rng = np.random.default_rng(seed)
    f = gt.astype(np.float64)
    return [
        _to_uint8(ndi.gaussian_filter(f, sigma=(2.0, 2.0, 0.0))),
        _to_uint8(ndi.uniform_filter1d(f, size=9, axis=1)),  # horizontal motion blur, length 9
        _to_uint8(f + rng.normal(0.0, 8.0, f.shape)),
    ]


# Small crops keep the tests fast. Sizes are non-square on purpose.
ASTRONAUT = data.astronaut()[120:184, 180:276]  # 64 x 96: face and helmet, strong edges
CHELSEA = data.chelsea()[80:157, 150:240]  # 77 x 90: fur texture, odd height


@pytest.mark.parametrize("gt", [ASTRONAUT, CHELSEA], ids=["astronaut", "chelsea"])
def test_parity_with_skimage_on_photos(gt: np.ndarray) -> None:
    preds = _degradations(gt, seed=0)
    ours_psnr = psnr(_to_tensor(*preds), _to_tensor(*([gt] * len(preds))))
    ours_ssim = ssim(_to_tensor(*preds), _to_tensor(*([gt] * len(preds))))
    for i, pred in enumerate(preds):
        sk_psnr = peak_signal_noise_ratio(gt, pred, data_range=255)
        assert ours_psnr[i].item() == pytest.approx(sk_psnr, abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(_sk_ssim(gt, pred), abs=1e-6)


def test_batch_of_crops_matches_per_image_skimage() -> None:
    """A batch of several images is scored image by image, each equal to skimage's score."""
    photos = [data.astronaut()[:200, :200], data.astronaut()[300:500, 250:450], data.chelsea()[50:250, 100:300]]
    gts = [p[::4, ::4][:40, :48] for p in photos]  # 40 x 48 thumbnails
    preds = [_degradations(g, seed=i)[i % 3] for i, g in enumerate(gts)]
    preds.append(_to_uint8(np.clip(gts[0].astype(np.float64) * 0.9 + 20.0, 0, 255)))  # contrast/brightness change
    gts.append(gts[0])
    ours_psnr = psnr(_to_tensor(*preds), _to_tensor(*gts))
    ours_ssim = ssim(_to_tensor(*preds), _to_tensor(*gts))
    assert ours_psnr.shape == ours_ssim.shape == (len(gts),)
    assert ours_psnr.dtype == ours_ssim.dtype == torch.float64
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(g, p, data_range=255), abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(_sk_ssim(g, p), abs=1e-6)


def test_uint8_round_trip_of_a_float_output() -> None:
    """A float network output, quantised, scores as the PNG it would be saved as."""
    gt = CHELSEA
    out = ndi.gaussian_filter(gt.astype(np.float64) / 255.0, sigma=(1.5, 1.5, 0.0)) * 1.05 - 0.02  # overshoots [0,1]
    pred = quantize_uint8(torch.from_numpy(out).permute(2, 0, 1)[None])
    png = _to_uint8(np.clip(out, 0.0, 1.0) * 255.0)
    assert torch.equal(pred, _to_tensor(png))
    assert psnr(pred, _to_tensor(gt)).item() == pytest.approx(
        peak_signal_noise_ratio(gt, png, data_range=255), abs=1e-4
    )
    assert ssim(pred, _to_tensor(gt)).item() == pytest.approx(_sk_ssim(gt, png), abs=1e-6)


def test_psnr_parity_holds_at_high_psnr() -> None:
    """Where piq.psnr's +1e-8 on the MSE would be off by ~3e-3 dB (45+ dB), ours still equals skimage."""
    gt = ASTRONAUT
    rng = np.random.default_rng(1)
    pred = _to_uint8(gt.astype(np.float64) + rng.normal(0.0, 1.0, gt.shape))
    sk = peak_signal_noise_ratio(gt, pred, data_range=255)
    assert sk > 45.0
    assert psnr(_to_tensor(pred), _to_tensor(gt)).item() == pytest.approx(sk, abs=1e-9)


def test_psnr_known_answers() -> None:
    gt = torch.full((2, 3, 16, 24), 0.5, dtype=torch.float64)
    offset = psnr(gt + 1.0 / 255.0, gt)
    # A uniform offset of one grey level: 20 log10(255) = 48.1308 dB.
    assert offset.tolist() == pytest.approx([20.0 * math.log10(255.0)] * 2, abs=1e-9)
    assert offset[0].item() == pytest.approx(48.1308, abs=1e-4)
    assert psnr(gt, gt).tolist() == pytest.approx([100.0, 100.0], abs=1e-9)  # the MSE floor: not inf
    # Symmetric in its arguments and independent of the input dtype.
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    y = quantize_uint8(x + 0.05)
    assert psnr(x, y).item() == pytest.approx(psnr(y, x).item(), abs=1e-12)
    assert psnr(x.float(), y.float()).item() == pytest.approx(psnr(x.double(), y.double()).item(), abs=1e-5)


def test_ssim_known_answers() -> None:
    x = torch.rand(3, 3, 20, 31, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    assert ssim(x, 1.0 - x).max().item() < 0.0  # anti-correlated structure
    assert ssim(x[:, :, :11, :11], x[:, :, :11, :11]).shape == (3,)  # the window size itself is allowed


def test_quantize_uint8() -> None:
    x = torch.tensor([-0.3, 0.0, 0.49 / 255, 0.51 / 255, 1.0 / 255, 100.4 / 255, 100.6 / 255, 1.0, 1.7])
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 100.0, 101.0, 255.0, 255.0]) / 255
    assert torch.equal(quantize_uint8(x), expected)
    # Exact ties go to the even neighbour, like numpy.round in BasicSR's tensor2img and skimage's img_as_ubyte.
    ties = torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5], dtype=torch.float64) / 255
    assert (quantize_uint8(ties) * 255).tolist() == [0.0, 2.0, 2.0, 128.0, 254.0]
    assert (quantize_uint8(ties) * 255).tolist() == np.round(ties.numpy() * 255).tolist()
    grid = torch.arange(256, dtype=torch.float32) / 255
    assert torch.equal(quantize_uint8(grid), grid)  # idempotent on the 8-bit grid
    assert quantize_uint8(grid.double()).dtype == torch.float64


def _rgb(*shape: int, value: float = 0.5) -> torch.Tensor:
    return torch.full(shape, value)


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (_rgb(1, 3, 16, 16), _rgb(1, 3, 16, 17), "shapes differ"),
        (_rgb(3, 16, 16), _rgb(3, 16, 16), r"\(N, 3, H, W\).*\(3, 16, 16\)"),
        (_rgb(1, 1, 16, 16), _rgb(1, 1, 16, 16), r"\(N, 3, H, W\).*\(1, 1, 16, 16\)"),
        (_rgb(1, 4, 16, 16), _rgb(1, 4, 16, 16), r"RGB batch, got shape \(1, 4, 16, 16\)"),
        (_rgb(0, 3, 16, 16), _rgb(0, 3, 16, 16), "empty"),
        (_rgb(1, 3, 16, 16, value=1.02), _rgb(1, 3, 16, 16), r"pred values must lie in \[0, 1\].*max 1.02"),
        (_rgb(1, 3, 16, 16), _rgb(1, 3, 16, 16, value=-0.1), r"target values must lie in \[0, 1\].*min -0.1"),
        (_rgb(1, 3, 16, 16, value=200.0), _rgb(1, 3, 16, 16), "max 200.*1/255"),
        (_rgb(1, 3, 16, 16, value=float("nan")), _rgb(1, 3, 16, 16), "NaN"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), _rgb(1, 3, 16, 16), "floating.*uint8"),
        (np.zeros((1, 3, 16, 16)), _rgb(1, 3, 16, 16), "torch.Tensor"),
    ],
)
def test_bad_inputs_raise(pred: torch.Tensor, target: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        psnr(pred, target)
    with pytest.raises(ValueError, match=match):
        ssim(pred, target)


def test_ssim_rejects_images_smaller_than_the_window() -> None:
    x = _rgb(1, 3, 10, 64)
    with pytest.raises(ValueError, match=r"at least 11x11 pixels.*got 10x64"):
        ssim(x, x)
    assert psnr(x, x).shape == (1,)  # PSNR has no minimum size


def test_unknown_ssim_variant_lists_known_ones() -> None:
    x = _rgb(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"unknown ssim variant 'matlab'; known variants: gaussian2d, matlab3d"):
        ssim(x, x, variant="matlab")
    assert set(SSIM_VARIANTS) == {"gaussian2d", "matlab3d", "ycrcb_sample"}


# --- matlab3d: MATLAB's ssim() on an H x W x 3 uint8 array --------------------------------------------------------


def _matlab3d_scipy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """An independent MATLAB-ssim on one (3, H, W) image: scipy's Gaussian with 'nearest' (= replicate) borders."""
    x = pred.permute(1, 2, 0).double().numpy() * 255
    y = target.permute(1, 2, 0).double().numpy() * 255

    def g(v: np.ndarray) -> np.ndarray:  # radius int(truncate * sigma + 0.5) = 5: the 11-tap window of MATLAB
        return ndi.gaussian_filter(v, 1.5, mode="nearest", truncate=5 / 1.5)

    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx**2, g(y * y) - my**2, g(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_matlab3d_equals_an_independent_volume_ssim() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 23, 19, generator=g).mul(255).round().div(255)
    pred = (0.7 * gt + 0.3 * torch.rand(gt.shape, generator=g)).mul(255).round().div(255)
    ours = ssim(pred, gt, variant="matlab3d")
    for i in range(2):
        assert ours[i].item() == pytest.approx(_matlab3d_scipy(pred[i], gt[i]), abs=1e-12)


def test_matlab3d_known_answers() -> None:
    image = torch.rand(1, 3, 12, 9, generator=torch.Generator().manual_seed(1))
    assert ssim(image, image, variant="matlab3d").item() == pytest.approx(1.0, abs=1e-12)
    # Constant images a and b (in 8-bit units): zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere.
    a, b = 100.0, 130.0
    c1 = (0.01 * 255) ** 2
    pred = torch.full((1, 3, 8, 8), a / 255, dtype=torch.float64)
    gt = torch.full((1, 3, 8, 8), b / 255, dtype=torch.float64)
    assert ssim(pred, gt, variant="matlab3d").item() == pytest.approx(
        (2 * a * b + c1) / (a * a + b * b + c1), abs=1e-12
    )


def test_matlab3d_mixes_channels_unlike_gaussian2d() -> None:
    """The colour axis is filtered like a spatial one: swapping two channels of both images changes matlab3d only."""
    g = torch.Generator().manual_seed(2)
    gt = torch.rand(1, 3, 16, 16, generator=g)
    gt[:, 0] = 0.5  # a flat red channel next to textured green and blue
    pred = (gt + 0.1 * torch.rand(gt.shape, generator=g)).clamp(0, 1)
    swap = [1, 0, 2]
    assert ssim(pred[:, swap], gt[:, swap], "gaussian2d").item() == pytest.approx(ssim(pred, gt, "gaussian2d").item())
    assert abs(ssim(pred[:, swap], gt[:, swap], "matlab3d").item() - ssim(pred, gt, "matlab3d").item()) > 1e-4


# --- RealBlur: intensity matching, ECC alignment, masked scores -------------------------------------------------


def _astronaut() -> torch.Tensor:
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).double() / 255.0


def test_realblur_identical_images() -> None:
    image = _astronaut()[:, 100:228, 100:260].float()
    assert realblur_scores(image, image) == (pytest.approx(100.0), pytest.approx(1.0, abs=1e-6))


def test_realblur_alignment_undoes_a_pure_translation() -> None:
    big = _astronaut()
    gt, shifted = big[:, 100:260, 120:300].float(), big[:, 104:264, 117:297].float()  # 4 px down, 3 px left
    unaligned = psnr(shifted[None].double(), gt[None].double()).item()
    aligned, aligned_ssim = realblur_scores(shifted, gt)
    assert unaligned < 15 and aligned > unaligned + 15 and aligned_ssim > 0.99
    # The homography ECC finds is that translation: the 4 top rows and 3 right columns have no source pixels.
    z = shifted.permute(1, 2, 0).numpy().astype(np.float32)
    x = gt.permute(1, 2, 0).numpy().astype(np.float32)
    _, _, mask = realblur_align(z, x)
    assert mask[:4].max() == 0 and mask[:, -3:].max() == 0 and mask[4:, :-3].min() == 1


def test_realblur_intensity_matching_closed_form_for_a_constant_offset() -> None:
    gt = _astronaut()[:, 150:278, 150:310].float()
    pred = (gt + 0.05).clamp(0, 1)
    z, x = pred.permute(1, 2, 0).numpy().astype(np.float32), gt.permute(1, 2, 0).numpy().astype(np.float32)
    alpha = (x * z).sum() / (z * z).sum()  # the scale that best maps the prediction onto the ground truth
    expected = 10 * np.log10(1 / np.mean((x - alpha * z) ** 2, dtype=np.float64))
    got, _ = realblur_scores(pred, gt)
    assert got == pytest.approx(expected, abs=0.01)
    assert got > psnr(pred[None].double(), gt[None].double()).item()  # matching removes part of the offset


def test_realblur_alignment_failure_is_an_alignment_error() -> None:
    flat = torch.full((3, 32, 32), 0.5)
    with pytest.raises(AlignmentError, match="ECC alignment failed"):
        realblur_scores(flat, flat)


@pytest.mark.parametrize("variant", ["gaussian2d", "matlab3d"])
def test_constant_offset_closed_form_for_both_variants(variant: str) -> None:
    """Flat images a and b: no structure term, SSIM = (2ab + C1) / (a^2 + b^2 + C1) on the 0..255 scale."""
    a, b = 90.0, 120.0
    c1 = (0.01 * 255) ** 2
    pred = torch.full((2, 3, 16, 20), a / 255, dtype=torch.float64)
    gt = torch.full((2, 3, 16, 20), b / 255, dtype=torch.float64)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(pred, gt, variant=variant).tolist() == pytest.approx([expected, expected], abs=1e-9)
    # PSNR of a constant offset d: 10 log10(1 / d^2).
    assert psnr(pred, gt)[0].item() == pytest.approx(10 * math.log10(1 / (30 / 255) ** 2), abs=1e-9)


# --- 1280x720 frames: the fast float64 paths against scikit-image and NAFNet's _ssim_3d ---------------------------


NAFNET_SSIM_3D_FRAME = 0.5919237986624525
"""megvii-research/NAFNet@2b4af71 ``basicsr/metrics/psnr_ssim.py`` ``_ssim_3d(pred, gt, 255)`` on ``frame_pair`` (HWC
float64 of the uint8 arrays), run in a scratch folder in float64 on the CPU: the release's conv3d built with
``dtype=torch.float64`` instead of ``.float().cuda()``, and applied to 40-row stripes of the edge-padded volume
(the whole 1280x720 volume needs 29 GB of im2col buffer on the CPU; on a 90x100 crop stripes and whole agree
exactly)."""


def test_gaussian2d_equals_skimage_on_a_1280x720_frame() -> None:
    pred, gt = frame_pair()
    ours = ssim(_to_tensor(pred), _to_tensor(gt)).item()
    assert ours == pytest.approx(_sk_ssim(gt, pred), abs=1e-12)


def test_matlab3d_equals_nafnets_ssim_3d_on_a_1280x720_frame() -> None:
    pred, gt = frame_pair()
    assert ssim(_to_tensor(pred), _to_tensor(gt), "matlab3d").item() == pytest.approx(NAFNET_SSIM_3D_FRAME, abs=1e-12)


def test_scores_do_not_depend_on_the_number_of_threads() -> None:
    """Worker processes score on one thread: every score must equal the multi-threaded one exactly, not to 1e-16."""
    pred, gt = (_to_tensor(a[:200, :300]) for a in frame_pair())
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append([psnr(pred, gt).item(), *(ssim(pred, gt, v).item() for v in sorted(SSIM_VARIANTS))])
    finally:
        torch.set_num_threads(threads)
    assert results[0] == results[1]


def test_gaussian_taps_and_the_colour_axis_filter() -> None:
    from benchmark.scoring.gauss import depth_mixing, taps

    w = taps()
    x = np.arange(-5, 6)
    expected = np.exp(-(x**2) / (2 * 1.5**2))
    np.testing.assert_allclose(w.numpy(), expected / expected.sum(), rtol=1e-15)
    m = depth_mixing(3)
    # Output 0 of a depth-3 axis padded by 5 replicated values on each side: taps 0..5 land on index 0, 6 on 1,
    # 7..10 on 2.
    assert m[0].tolist() == pytest.approx([w[:6].sum().item(), w[6].item(), w[7:].sum().item()], abs=1e-15)
    assert m.sum(dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-15)
    volume = torch.rand(3, 4, 5, dtype=torch.float64)
    padded = torch.cat([volume[:1].expand(5, 4, 5), volume, volume[-1:].expand(5, 4, 5)])
    direct = sum(w[k] * padded[k : k + 3] for k in range(11))
    assert torch.allclose(torch.einsum("dc,chw->dhw", m, volume), direct, atol=1e-15)
