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

from benchmark.core.errors import ConfigError
from benchmark.core.sections import ScoringProtocol as Protocol
from benchmark.data.dataset import PairedDataset
from benchmark.evaluation.records import SCHEMA, EvalRecord, RecordError, read_record
from benchmark.evaluation.run import evaluate_run
from benchmark.scoring.loop import score_model
from benchmark.scoring.metrics import psnr, ssim
from benchmark.scoring.protocol import score
from benchmark.scoring.realblur import realblur_scores
from benchmark.scoring.stats import bootstrap_ci
from benchmark.training.loop import run_training
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
    record = evaluate_run(cfg, tlc=False)
    expected = _skimage_scores(tiny_synth)
    per_image = pd.read_csv(cfg.layout.record("synthblur", "synthblur", "identity", False).with_suffix(".csv"))
    assert sorted(per_image["name"]) == sorted(expected)
    for row in per_image.itertuples():
        assert row.psnr == pytest.approx(expected[row.name][0], abs=1e-4)
        assert row.ssim == pytest.approx(expected[row.name][1], abs=1e-4)
    assert record.psnr == pytest.approx(np.mean([v[0] for v in expected.values()]), abs=1e-4)
    assert record.n_images == len(expected) and record.applicable is True and record.weights == "none"
    saved = json.loads(cfg.layout.record("synthblur", "synthblur", "identity", False).read_text())
    assert saved["psnr"] == record.psnr and saved["protocol"]["ssim_variant"] == "gaussian2d"
    assert saved["schema"] == SCHEMA and saved["provenance"]["dataset_sha256"] == record.provenance["dataset_sha256"]
    # The record holds the per-image scores exactly (the CSV rounds them to 6 decimals) and their intervals.
    loaded = read_record(cfg.layout.record("synthblur", "synthblur", "identity", False))
    assert loaded == record
    test_set = PairedDataset(tiny_synth, "test", crop_size=None, augment="none")
    for item, name, value in zip(test_set, loaded.names, loaded.values("psnr"), strict=True):
        assert name == item["name"] and value == psnr(item["lq"][None], item["gt"][None]).item()  # not rounded
    assert loaded.intervals["psnr"] == bootstrap_ci(loaded.values("psnr"))


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
    result = score_model(
        torch.nn.Identity(), loader, Protocol(quantize="uint8", ssim_variant="gaussian2d"), progress=False
    )
    assert result.means["psnr"] == pytest.approx(100.0)  # the MSE floor of benchmark.scoring.metrics.psnr
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
    record = evaluate_run(cfg, tlc=True)
    assert record.applicable is False and record.tlc_window is not None and record.tlc_window.layers == 0
    assert record.row == "identity-Local"
    assert read_record(cfg.layout.record("synthblur", "synthblur", "identity", True)) == record


def test_trained_model_evaluates_from_its_final_checkpoint(small_cfg) -> None:
    cfg = small_cfg("model=mimo_unet_tiny")
    run_training(cfg)
    record = evaluate_run(cfg, tlc=False)
    assert record.checkpoint.endswith("mimo_unet_tiny-synthblur/final.pt") and record.weights == "pipeline"
    assert len(record.checkpoint_sha256) == 64 and np.isfinite(record.psnr)


def test_missing_and_mismatched_checkpoints_are_clear_errors(small_cfg, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"final\.pt does not exist"):
        evaluate_run(small_cfg("model=mimo_unet_tiny"), tlc=False)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, wrong)
    listing = r"(?s)missing keys \(100\):\n    AFFs.*unexpected keys \(1\):\n    conv\.weight"
    with pytest.raises(CheckpointError, match=listing):
        evaluate_run(small_cfg("model=mimo_unet_tiny", f"checkpoint={wrong}"), tlc=False)


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


def test_records_of_another_schema_are_refused_with_the_fix(tmp_path: Path) -> None:
    legacy = tmp_path / "identity.json"
    legacy.write_text(json.dumps({"row": "identity", "psnr": 23.5, "ssim": 0.7, "applicable": True}))
    with pytest.raises(RecordError, match=r"identity\.json: evaluation record of schema none .* re-run its stage"):
        read_record(legacy)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "msfs-bench/eval-record/2"')
    with pytest.raises(RecordError, match=r"broken\.json is not valid JSON"):
        read_record(broken)
    with pytest.raises(RecordError, match=r"gone\.json is missing"):
        read_record(tmp_path / "gone.json")


def test_record_round_trips_through_json(small_cfg) -> None:
    record = evaluate_run(small_cfg("model=identity"), tlc=False)
    again = EvalRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.means == record.means and again.names == record.names
    truncated = {**record.to_json(), "per_image": {"name": ["a"], "psnr": [1.0, 2.0]}}
    with pytest.raises(RecordError, match="malformed evaluation record"):
        EvalRecord.from_json(truncated)


def test_unknown_model_override_names_its_key(small_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^model\.overrides\.widht: not accepted by nafnet_tiny"):
        evaluate_run(small_cfg("model=nafnet_tiny", "+model.overrides.widht=4"), tlc=False)
