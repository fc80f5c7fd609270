"""Evaluation: known answers through an independent path (scikit-image on the PNG files), TLC applicability, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.config import Protocol
from benchmark.data import PairedDataset
from benchmark.evaluate import evaluate, run_evaluation, score
from benchmark.metrics import realblur_scores, ssim
from benchmark.train import run_training
from models import CheckpointError


def _skimage_scores(root: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for blur in sorted((root / "test" / "blur").glob("*.png")):
        a = np.asarray(Image.open(blur).convert("RGB"))
        b = np.asarray(Image.open(root / "test" / "sharp" / blur.name).convert("RGB"))
        p = peak_signal_noise_ratio(b, a, data_range=255)
        s = structural_similarity(
            b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        )
        out[blur.stem] = (p, s)
    return out


def test_identity_scores_equal_scikit_image_on_the_pngs(small_cfg, tiny_synth: Path) -> None:
    cfg = small_cfg("model=identity")
    record = run_evaluation(cfg)
    expected = _skimage_scores(tiny_synth)
    per_image = pd.read_csv(Path(cfg.paths.results) / "runs/synthblur/synthblur/identity.csv")
    assert sorted(per_image["name"]) == sorted(expected)
    for row in per_image.itertuples():
        assert row.psnr == pytest.approx(expected[row.name][0], abs=1e-4)
        assert row.ssim == pytest.approx(expected[row.name][1], abs=1e-4)
    assert record["psnr"] == pytest.approx(np.mean([v[0] for v in expected.values()]), abs=1e-4)
    assert record["n_images"] == len(expected) and record["applicable"] is True
    saved = json.loads((Path(cfg.paths.results) / "runs/synthblur/synthblur/identity.json").read_text())
    assert saved["psnr"] == record["psnr"] and saved["protocol"]["ssim_variant"] == "gaussian2d"


def test_perfect_restoration_scores_the_ceiling(tiny_synth: Path) -> None:
    class Oracle(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.inner = PairedDataset(tiny_synth, "test", crop_size=None, augment="none")

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i: int) -> dict:
            item = self.inner[i]
            return {**item, "lq": item["gt"]}

    loader = torch.utils.data.DataLoader(Oracle(), batch_size=1)
    result = evaluate(
        torch.nn.Identity(), loader, Protocol(quantize="uint8", ssim_variant="gaussian2d"), progress=False
    )
    assert result.means["psnr"] == pytest.approx(100.0)  # the MSE floor of benchmark.metrics.psnr
    assert result.means["ssim"] == pytest.approx(1.0)


def test_quantisation_and_border_crop_follow_the_protocol() -> None:
    gt = torch.full((1, 3, 16, 16), 128 / 255)  # on the 8-bit grid, as ground-truth PNGs are
    pred = gt + 0.3 / 255  # rounds back to gt under the uint8 protocol
    p8 = score(pred, gt, Protocol(quantize="uint8", ssim_variant="gaussian2d"))["psnr"]
    pf = score(pred, gt, Protocol(quantize="none", ssim_variant="gaussian2d"))["psnr"]
    assert p8.item() == pytest.approx(100.0)
    assert pf.item() == pytest.approx(10 * np.log10(1 / (0.3 / 255) ** 2), abs=1e-3)
    framed = gt.clone()
    framed[..., :2, :] = 0  # damage only the border
    pc = score(framed, gt, Protocol(quantize="uint8", ssim_variant="gaussian2d", crop_border=2))["psnr"]
    assert pc.item() == pytest.approx(100.0)


def test_tlc_on_a_model_without_global_statistics_is_recorded_not_applicable(small_cfg) -> None:
    cfg = small_cfg("model=identity", "tlc=true")
    record = run_evaluation(cfg)
    assert record["applicable"] is False and record["tlc_layers"] == 0
    assert record["row"] == "identity-Local"


def test_trained_model_evaluates_from_its_final_checkpoint(small_cfg) -> None:
    cfg = small_cfg("model=mimo_unet_tiny")
    run_training(cfg)
    record = run_evaluation(cfg)
    assert record["checkpoint"].endswith("mimo_unet_tiny-synthblur/final.pt")
    assert len(record["checkpoint_sha256"]) == 64 and np.isfinite(record["psnr"])


def test_missing_and_mismatched_checkpoints_are_clear_errors(small_cfg, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"final\.pt does not exist"):
        run_evaluation(small_cfg("model=mimo_unet_tiny"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, wrong)
    listing = r"(?s)missing keys \(100\):\n    AFFs.*unexpected keys \(1\):\n    conv\.weight"
    with pytest.raises(CheckpointError, match=listing):
        run_evaluation(small_cfg("model=mimo_unet_tiny", f"checkpoint={wrong}"))


def test_protocol_extras_and_ecc_alignment_reach_the_scores() -> None:
    from skimage import data

    gt = (torch.from_numpy(data.astronaut()[100:164, 100:180]).permute(2, 0, 1).float() / 255)[None]
    pred = torch.roll(gt, shifts=(2, -1), dims=(2, 3))
    plain = score(pred, gt, Protocol(quantize="uint8", ssim_variant="gaussian2d", extra_ssim_variants=("matlab3d",)))
    assert set(plain) == {"psnr", "ssim", "ssim_matlab3d"}
    assert plain["ssim_matlab3d"].item() == pytest.approx(ssim(pred, gt, variant="matlab3d").item())
    aligned = score(pred, gt, Protocol(quantize="uint8", ssim_variant="gaussian2d", align="ecc"))
    p, s = realblur_scores(pred[0], gt[0])
    assert (aligned["psnr"].item(), aligned["ssim"].item()) == (pytest.approx(p), pytest.approx(s))
    assert aligned["psnr"].item() > plain["psnr"].item() + 5  # the shift is undone before scoring
