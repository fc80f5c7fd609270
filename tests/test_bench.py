"""benchmark.tools.bench: the measurements run end to end on tiny inputs and agree with their references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import bench
from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.data.dataset import PairedDataset
from benchmark.tools.bench import (
    TRAIN_MODES,
    bench_loader,
    bench_metrics,
    bench_model,
    render_bench_markdown,
    train_images_per_s,
    write_frames,
)


def test_metric_benchmark_compares_equal_values() -> None:
    result = bench_metrics(pairs=2, size=32)
    assert result["max_abs_difference"] < 1e-6  # ours and scikit-image score the same pairs alike
    assert result["ours_pairs_per_s"] > 0 and result["skimage_pairs_per_s"] > 0 and result["device"] == "cpu"


def test_speed_modes_run_the_training_step() -> None:
    cpu = torch.device("cpu")
    assert train_images_per_s("identity", mode="fp32", device=cpu, size=16, batch=1, repeats=1) is None
    for mode in ("fp32", "bf16", "bf16_cl"):
        assert train_images_per_s("nafnet_tiny", mode=mode, device=cpu, size=32, batch=1, repeats=1) > 0
    assert set(TRAIN_MODES["bf16_cl_compile"]) == {"bf16", "channels_last", "compile"}


def test_frames_are_real_photographs_of_gopro_size(tmp_path: Path) -> None:
    root = write_frames(tmp_path / "frames", pairs=2, size=(72, 128))
    data = PairedDataset(root, "train", crop_size=None, augment="none")
    item = data[0]
    assert item["lq"].shape == (3, 72, 128) == item["gt"].shape
    # A photograph and its blur: different, yet close (not noise, not a copy).
    diff = float((item["lq"] - item["gt"]).abs().mean())
    assert 0.005 < diff < 0.2 and float(item["gt"].std()) > 0.1


def test_loader_benchmark_times_png_and_cache(tiny_synth: Path) -> None:
    loader = bench_loader(tiny_synth, size=32, batch=2, workers=(0, 1), batches=2)
    assert [(r["source"], r["workers"]) for r in loader["rows"]] == [("png", 0), ("png", 1), ("cache", 0), ("cache", 1)]
    assert all(r["images_per_s"] > 0 for r in loader["rows"])
    assert loader["frame"] == [64, 64] and loader["cache_entries"] == 18  # 9 train pairs, blur and sharp
    assert loader["cache_bytes"] == 18 * 64 * 64 * 3 + 18 * 128  # the arrays plus each .npy's 128-byte header
    assert loader["best_images_per_s"] == max(r["images_per_s"] for r in loader["rows"])


def test_model_benchmark_and_summary(tiny_synth: Path) -> None:
    cpu = torch.device("cpu")
    models = {
        name: bench_model(name, device=cpu, size=32, batch=1, latency_size=(32, 48), repeats=1)
        for name in ("identity", "nafnet_tiny")
    }
    assert models["identity"]["train_images_per_s"] is None and models["identity"]["latency_tlc_ms"] is None
    naf = models["nafnet_tiny"]
    assert naf["train_images_per_s"] > 0 and naf["latency_ms"] > 0 and naf["latency_tlc_ms"] > 0
    assert naf["train_tflops"] == pytest.approx(naf["train_gflop_per_step"] * naf["train_images_per_s"] / 1e3)
    loader = bench_loader(tiny_synth, size=32, batch=2, workers=(0,), batches=2)
    payload = {
        "machine": {"device": "cpu", "cpu": "X", "threads": 1, "torch": "2"},
        "size": 32,
        "batch": 1,
        "latency_size": [32, 48],
        "repeats": 1,
        "peak_tflops": None,
        "models": models,
        "modes": {"nafnet_tiny": {"fp32": 10.0, "bf16": 5.0}},
        "metrics": bench_metrics(pairs=1, size=16),
        "loader": loader,
    }
    text = render_bench_markdown(payload)
    assert "| identity | 0 | not measured |" in text and "| nafnet_tiny | 290,715 |" in text
    assert "| nafnet_tiny | 10.0 | 5.0 (0.50x) |" in text
    headroom = loader["best_images_per_s"] / naf["train_images_per_s"]
    assert f"| {headroom:,.1f}x |" in text and "nothing to train |" in text
    assert "| memory-mapped uint8 cache | 0 |" in text


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    code = bench.main(
        [
            "models",
            "--results",
            str(tmp_path / "results"),
            "--models",
            "identity",
            "--mode-models",
            "--size",
            "16",
            "--latency-size",
            "16",
            "16",
            "--repeats",
            "1",
            "--loader-pairs",
            "1",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    (json_path,) = Layout(PathsConfig(results=str(tmp_path / "results"))).bench.glob("cpu-*.json")
    assert json_path.with_suffix(".md").read_text().startswith("# Benchmark:")
    assert np.isfinite(json.loads(json_path.read_text())["loader"]["best_images_per_s"])


@pytest.mark.slow
def test_speed_benchmark_measures_ssim_scoring_and_tlc() -> None:
    from benchmark.tools.bench_speed import bench_scoring, bench_ssim_frame, bench_tlc, render_speed_markdown
    from benchmark.tools.complexity import machine

    cpu = torch.device("cpu")
    frame = bench_ssim_frame(cpu, repeats=1)
    assert set(frame) == {"gaussian2d", "matlab3d"}
    assert all(r["difference"] < 1e-10 and r["seconds_1_thread"] > 0 for r in frame.values())
    scoring = bench_scoring(pairs=2, repeats=1)
    assert all(r["identical"] for rates in scoring["protocols"].values() for r in rates.values())
    assert set(scoring["protocols"]["realblur_j"]) >= {"0", "1"}
    tlc = bench_tlc(["identity", "nafnet_tiny"], device=cpu, size=(48, 64), repeats=1)
    assert list(tlc["models"]) == ["nafnet_tiny"]  # identity has nothing to convert
    row = tlc["models"]["nafnet_tiny"]
    assert row["max_output_difference"] < 1e-4 and min(row[f"{v}_peak_mib"] for v in ("plain", "ours", "tlc")) > 50
    assert tlc["box_mean_error"]["ours"] < tlc["box_mean_error"]["tlc"]
    text = render_speed_markdown({"machine": machine(cpu), "ssim": frame, "scoring": scoring, "tlc": tlc})
    assert "| `matlab3d` |" in text and "| realblur_j |" in text and "| nafnet_tiny |" in text
