"""Release protocols: each equals its release's own scoring on the same inputs; the official and the release protocol
are scored in one pass (one inference where they share it), recorded per image, and filed per training set.

References, all run here on the same arrays: MIMO-UNet's ``eval.py`` line 57 calls scikit-image's
``peak_signal_noise_ratio(pred_clip, label, data_range=1)``; the MSFS-Net release saves with ``pred + 0.5 / 255`` and
torchvision's ``to_pil_image`` (``eval_R.py`` lines 80-85) and scores the PNGs with MATLAB's ``psnr``/``ssim``
(``psnr_ssim.m`` lines 22-25), emulated by MATLAB's PSNR formula on the uint8 arrays and the independent scipy volume
SSIM of ``tests/test_metrics.py``; HINet's grids are checked against the release's own ``grids``/``grids_inverse`` in
``tests/test_tiles.py``, whose golden values this file reuses through the protocol.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import save_image

from benchmark.core.config import load_config
from benchmark.core.errors import ConfigError
from benchmark.core.sections import ReleaseCheckpoint, ReleaseConfig, ScoringProtocol
from benchmark.data.decode import read_rgb
from benchmark.evaluation.records import read_record
from benchmark.evaluation.run import evaluate_run
from benchmark.scoring.inference import restore
from benchmark.scoring.loop import score_model, score_protocols
from benchmark.scoring.metrics import quantize_uint8, quantize_uint8_half_up
from benchmark.scoring.protocol import score
from benchmark.scoring.realblur import REALBLUR_SSIM_PAD, realblur_align, realblur_scores
from benchmark.scoring.tiles import tiled_forward
from models import DeblurModel, create_model
from tests.test_metrics import _matlab3d_scipy


def _release_protocol(model: str, test: str) -> ScoringProtocol:
    release = load_config([f"model={model}"]).model.release
    assert release is not None
    return release.protocols[test]


def _official(test: str) -> ScoringProtocol:
    return load_config([f"dataset={test}"]).dataset.protocol


def _astronaut() -> torch.Tensor:
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255.0


# --- rounding ---------------------------------------------------------------------------------------------------


def test_half_up_rounding_is_what_save_image_and_to_pil_image_write(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 40, 50, generator=g) * 1.2 - 0.1  # overshoots both ends, as network outputs do
    x[0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 3.5]) / 255  # exact ties: torchvision rounds them up
    save_image(x, tmp_path / "save_image.png")  # DMPHN's DMPHN_1_2_4_8_test.py
    from_save_image = read_rgb(tmp_path / "save_image.png")
    ours = (quantize_uint8_half_up(x) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, from_save_image)
    pil = np.asarray(to_pil_image(x.clamp(0, 1) + 0.5 / 255, "RGB"))  # MIMO-UNet's and MSFS-Net's eval.py
    assert (pil != ours).mean() < 1e-3  # equal but for float32 ties (x + 0.5/255 is not exact)
    assert list(ours[0, :4, 0]) == [1, 2, 3, 4]
    assert list((quantize_uint8(x) * 255).round()[0, 0, :4].int()) == [0, 2, 2, 4]  # ties to even


# --- each release protocol against its release's scoring ------------------------------------------------------


def test_mimo_unet_protocol_is_eval_py_float_psnr() -> None:
    protocol = _release_protocol("mimo_unet_plus", "gopro")
    g = torch.Generator().manual_seed(1)
    gt = (torch.rand(2, 3, 48, 64, generator=g) * 255).round() / 255
    pred = gt + 0.03 * torch.randn(gt.shape, generator=g)  # off the 8-bit grid, beyond [0, 1] at places
    ours = score(pred, gt, protocol)["psnr"]
    for i in range(2):
        label = gt[i].numpy()
        expected = peak_signal_noise_ratio(pred[i].clamp(0, 1).numpy(), label, data_range=1)  # eval.py:46-57
        assert ours[i].item() == pytest.approx(expected, abs=1e-6)  # skimage keeps float32; ours is float64
    official = score(pred, gt, _official("gopro"))["psnr"]
    assert (official - ours).abs().min() > 1e-4  # 8-bit rounding moves every image


def _psnr_ssim_m(result_png: np.ndarray, gt_png: np.ndarray) -> tuple[float, float]:
    """MATLAB's ``psnr(input, gt)`` on uint8 RGB (peak 255, mean over all values) and ``ssim(input, gt)`` (volume)."""
    mse = np.mean((result_png.astype(np.float64) - gt_png.astype(np.float64)) ** 2)
    psnr = 10 * math.log10(255.0**2 / mse)
    as_tensor = [torch.from_numpy(a.copy()).permute(2, 0, 1).double() / 255 for a in (result_png, gt_png)]
    return psnr, _matlab3d_scipy(*as_tensor)


@pytest.mark.slow
def test_msfsnet_realblur_protocol_is_psnr_ssim_m_on_the_saved_pngs_without_alignment() -> None:
    protocol = _release_protocol("msfsnet", "realblur_j")
    assert (protocol.align, protocol.ssim_variant, protocol.quantize) == ("none", "matlab3d", "uint8_half_up")
    big = _astronaut()
    gt = big[:, 100:260, 120:300]
    # A RealBlur-like misaligned restoration: 2 px off, slightly brighter, a little noise.
    g = torch.Generator().manual_seed(2)
    pred = (big[:, 102:262, 119:299] * 1.02 + 0.01 * torch.randn(gt.shape, generator=g)).clamp(-0.05, 1.05)
    saved = np.asarray(to_pil_image(pred.clamp(0, 1) + 0.5 / 255, "RGB"))  # eval_R.py:80-85
    gt_png = (gt * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    expected_psnr, expected_ssim = _psnr_ssim_m(saved, gt_png)
    gt8 = torch.from_numpy(gt_png).permute(2, 0, 1).float() / 255
    ours = score(pred[None], gt8[None], protocol)
    assert ours["psnr"].item() == pytest.approx(expected_psnr, abs=1e-4)
    assert ours["ssim"].item() == pytest.approx(expected_ssim, abs=1e-5)
    # Golden values (this function's reference, run once in the session that wrote it).
    assert (expected_psnr, expected_ssim) == (pytest.approx(17.777441, abs=1e-6), pytest.approx(0.648444, abs=1e-6))
    official = score(pred[None], gt8[None], _official("realblur_j"))  # ECC aligns what psnr_ssim.m does not
    assert official["psnr"].item() == pytest.approx(35.43, abs=0.01)
    assert official["ssim"].item() - ours["ssim"].item() > 0.3


class _CropDependent(DeblurModel):
    """The network of tests/test_tiles.py's golden values: output depends on the crop's own mean."""

    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        return lq * lq.mean(dim=(1, 2, 3), keepdim=True) + torch.roll(lq, 1, -1) * 0.1 - 0.05


def test_hinet_gopro_protocol_runs_the_release_grids_on_720x1280() -> None:
    protocol = _release_protocol("hinet", "gopro")
    assert protocol.tile == 256 and protocol.quantize == "uint8"
    x = (torch.arange(720 * 1280 * 3, dtype=torch.float64).reshape(1, 3, 720, 1280) % 251) / 250
    out = restore(_CropDependent(), x, protocol)
    # The release's grids() -> network -> grids_inverse() on the same input (tests/test_tiles.py golden values).
    assert out.sum().item() == pytest.approx(691182.7483105605, rel=1e-12)
    assert out.abs().sum().item() == pytest.approx(702287.8042733099, rel=1e-12)
    whole = restore(_CropDependent(), x, dataclasses.replace(protocol, tile=None))
    assert (out - whole).abs().max() > 1e-3  # tiling changes a crop-dependent network's output


# --- one pass, both protocols -------------------------------------------------------------------------------------


class _Counting(DeblurModel):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def restore(self, lq: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (0.9 * lq + 0.05).clamp(0, 1) + 0.002  # off the 8-bit grid


def _loader(n: int = 3, size: int = 40) -> list[dict]:
    g = torch.Generator().manual_seed(3)
    gt = (torch.rand(n, 3, size, size, generator=g) * 255).round() / 255
    lq = ((gt + 0.1 * torch.rand(gt.shape, generator=g)).clamp(0, 1) * 255).round() / 255
    return [{"lq": lq[i : i + 1], "gt": gt[i : i + 1], "name": [f"im{i}"]} for i in range(n)]


def test_protocols_that_run_the_model_alike_share_one_inference() -> None:
    official, mimo = _official("gopro"), _release_protocol("mimo_unet", "gopro")
    model = _Counting()
    both = score_protocols(model, _loader(), (official, mimo), progress=False)
    assert model.calls == 3  # three images, one inference each for both protocols
    for protocol, scores in zip((official, mimo), both, strict=True):
        alone = score_model(_Counting(), _loader(), protocol, progress=False)
        assert scores.values == alone.values and scores.names == ("im0", "im1", "im2")
    assert both[0].values["psnr"] != both[1].values["psnr"]
    tiled = dataclasses.replace(official, tile=16)
    model = _Counting()
    score_protocols(model, _loader(), (official, tiled), progress=False)
    assert model.calls == 3 + 3 * 2  # the whole images, then 3 x 3 tiles of 16 px an image, in batches of 8


# --- padding ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode"), [("nafnet_tiny", "zero"), ("hinet_tiny", "zero"), ("msfsnet_tiny", "reflect")]
)
def test_each_model_pads_as_its_release_and_the_other_mode_is_available(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.pad_mode == mode
    x = torch.rand(1, 3, 23, 37)
    m = model.pad_multiple
    ph, pw = (-23) % m, (-37) % m
    with torch.no_grad():
        zero = model.restore(F.pad(x, (0, pw, 0, ph)))[..., :23, :37]
        reflect = model.restore(F.pad(x, (0, pw, 0, ph), mode="reflect"))[..., :23, :37]
        assert torch.equal(model(x), zero if mode == "zero" else reflect)
        assert torch.equal(model(x, pad_mode="reflect"), reflect) and torch.equal(model(x, pad_mode="zero"), zero)
    assert (zero - reflect).abs().max() > 1e-4
    with pytest.raises(ValueError, match="pad mode must be one of reflect, zero, replicate"):
        model(x, pad_mode="symmetric")


# --- RealBlur SSIM in float64 -------------------------------------------------------------------------------------


def _masked_ssim_float64(xr: np.ndarray, zr: np.ndarray, cr: np.ndarray) -> float:
    """An independent float64 reference of the official masked SSIM: scipy Gaussian (sigma 1.5, truncate 3.5,
    reflect borders, as scikit-image), population statistics, exact sums (``math.fsum``)."""
    xr, zr, cr = (a.astype(np.float64) for a in (xr, zr, cr))

    def f(v: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(v, 1.5, mode="reflect", truncate=3.5)

    p, values = REALBLUR_SSIM_PAD, []
    for c in range(3):
        x, y = xr[..., c], zr[..., c]
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        s = ((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4))
        values.append(math.fsum((s * cr[..., c])[p:-p, p:-p].ravel()) / math.fsum(cr[p:-p, p:-p, c].ravel()))
    return float(np.mean(values))


@pytest.mark.slow
def test_realblur_ssim_is_float64_on_dark_low_contrast_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    gt = ((0.02 + 0.06 * _astronaut()[:, :480, :500]) * 255).round() / 255  # dark and flat, like RealBlur-R
    pred = torch.roll((gt + 0.004 * torch.randn(gt.shape, generator=g)).clamp(0, 1), 1, -1)
    pred = (pred * 255).round() / 255
    z, x = (t.permute(1, 2, 0).numpy().astype(np.float32) for t in (pred, gt))
    zr, xr, cr = realblur_align(z, x)
    reference = _masked_ssim_float64(xr, zr, cr)
    assert realblur_scores(pred, gt)[1] == pytest.approx(reference, abs=1e-5)
    # What float32 inputs give with scikit-image >= 0.19 (the bug): off by more than the tolerance.
    _, map32 = structural_similarity(
        xr, zr, channel_axis=-1, gaussian_weights=True, use_sample_covariance=False, data_range=1, full=True
    )
    p = REALBLUR_SSIM_PAD
    float32 = float(np.mean((map32 * cr)[p:-p, p:-p].sum(axis=(0, 1)) / cr[p:-p, p:-p].sum(axis=(0, 1))))
    assert map32.dtype == np.float32 and abs(float32 - reference) > 1e-5


# --- evaluation: both protocols recorded, releases per training set, TF32 off ---------------------------------------


def _with_release(cfg, protocols: dict[str, ScoringProtocol]):
    release = ReleaseConfig(
        url="https://example.invalid/nafnet",
        source="test",
        checkpoints={
            "gopro": ReleaseCheckpoint(file="NAFNet-GoPro.pth", format="params", train_size=48),
            "realblur_j": ReleaseCheckpoint(file="NAFNet-RealBlur-J.pth", format="params", train_size=64),
        },
        protocols=protocols,
    )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, release=release))


def test_release_weights_of_each_training_set_score_under_both_protocols(small_cfg) -> None:
    release_protocol = ScoringProtocol(quantize="uint8_half_up", ssim_variant="matlab3d", tile=32, padding="reflect")
    cfg = _with_release(
        small_cfg("model=nafnet_tiny", "checkpoint=release", "train_dataset=realblur_j"),
        {"synthblur": release_protocol},
    )
    torch.manual_seed(5)
    model = create_model("nafnet_tiny")
    placed = cfg.layout.release_weights("nafnet_tiny", "NAFNet-RealBlur-J.pth")
    placed.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": model.state_dict()}, placed)
    try:
        torch.backends.cudnn.allow_tf32 = True
        record = evaluate_run(cfg, tlc=False)
    finally:
        placed.unlink()  # the dataset fixture's folder is shared by the session
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert record.provenance["tf32"] == "disabled"
    path = cfg.layout.record("realblur_j", "synthblur", "nafnet_tiny", False, release=True)
    assert read_record(path) == record and record.train_dataset == "realblur_j" and record.weights == "release"
    assert record.release is not None and record.release.protocol == release_protocol
    # The release scores equal a separate pass under that protocol alone, per image.
    from benchmark.data.dataset import PairedDataset

    loader = torch.utils.data.DataLoader(
        PairedDataset(cfg.layout.dataset("synthblur"), "test", crop_size=None, augment="none"), batch_size=1
    )
    model.eval()
    alone = score_model(model, loader, release_protocol, progress=False)
    assert record.release.scores == alone.values and record.release.scores["psnr"] != record.scores["psnr"]
    header = path.with_suffix(".csv").read_text().splitlines()[0]
    assert header == "name,psnr,ssim,release_psnr,release_ssim"


def test_a_training_set_without_a_published_checkpoint_is_named(small_cfg) -> None:
    cfg = _with_release(small_cfg("model=nafnet_tiny", "checkpoint=release", "train_dataset=realblur_r"), {})
    with pytest.raises(
        ConfigError,
        match=r"train_dataset: no released checkpoint trained on 'realblur_r'; published: "
        r"gopro, realblur_j",
    ):
        evaluate_run(cfg, tlc=False)


def test_release_conf_files_list_every_published_checkpoint() -> None:
    msfsnet = load_config(["model=msfsnet"]).model.release
    assert msfsnet is not None
    assert {k: v.file for k, v in msfsnet.checkpoints.items()} == {
        "gopro": "model.pkl",
        "realblur_r": "model_R.pkl",
        "realblur_j": "model_J.pkl",
    }
    mimo = load_config(["model=mimo_unet_plus"]).model.release
    assert mimo is not None and set(mimo.checkpoints) == {"gopro", "realblur_r"}
    assert load_config(["model=msfsnet", "checkpoint=release", "train_dataset=realblur_j"]).weights_train_dataset == (
        "realblur_j"
    )
    assert load_config(["model=msfsnet", "checkpoint=release"]).weights_train_dataset == "gopro"


def test_unknown_dataset_keys_in_a_release_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"model.release.protocols: keys must be datasets .* got \['gopr0'\]"):
        load_config(
            [
                "model=mimo_unet",
                "+model.release.protocols.gopr0.quantize=none",
                "+model.release.protocols.gopr0.ssim_variant=gaussian2d",
            ]
        )


def test_tiled_forward_is_the_protocol_tiling() -> None:
    x = _loader(1, 40)[0]["lq"]
    model = _Counting()
    protocol = dataclasses.replace(_official("gopro"), tile=16)
    assert torch.equal(restore(model, x, protocol), tiled_forward(model, x, 16))


def test_deblurgan_protocol_runs_the_network_in_train_mode_seeded_as_its_release() -> None:
    """DeblurGAN's test script never calls eval(): its release protocol runs the generator with live dropout, seeded,
    and leaves the model as it found it."""
    protocol = _release_protocol("deblurgan", "gopro")
    assert (protocol.network_mode, protocol.seed, protocol.quantize) == ("train", 0, "uint8_floor")
    torch.manual_seed(3)
    model = create_model("deblurgan_tiny", use_dropout=True).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        first, second = restore(model, x, protocol), restore(model, x, protocol)
        torch.manual_seed(0)
        model.train()
        expected = model(x)  # the release's test-time network under the same seed
        model.eval()
        deterministic = restore(model, x, _official("gopro"))
    assert not model.training
    assert torch.equal(first, second) and torch.equal(first, expected)
    assert (first - deterministic).abs().max() > 1e-3  # dropout is live
    assert protocol.inference != _official("gopro").inference  # never shares the eval-mode inference


def test_a_train_mode_protocol_leaves_batchnorm_statistics_for_the_official_one() -> None:
    """DeblurGAN-v2 tests in train mode; its BatchNorm backbone would update its running statistics, which the
    official (eval-mode) protocol of the same pass reads: they are restored after every train-mode inference."""
    protocol = _release_protocol("deblurganv2", "gopro")
    assert protocol.network_mode == "train"
    torch.manual_seed(6)
    model = create_model("deblurganv2_tiny").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _loader(2, 64)
    both = score_protocols(model, loader, (_official("gopro"), protocol), progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    torch.manual_seed(6)
    alone = score_model(create_model("deblurganv2_tiny"), loader, _official("gopro"), progress=False)
    assert both[0].values == alone.values and both[1].values != alone.values
