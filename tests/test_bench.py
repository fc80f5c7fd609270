"""benchmark.bench: the measurements run end to end on tiny inputs and agree with their references."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.bench import _markdown, bench_loader, bench_metrics, bench_model


def test_metric_benchmark_compares_equal_values() -> None:
    result = bench_metrics(pairs=2, size=32)
    assert result["max_abs_difference"] < 1e-6  # ours and scikit-image score the same pairs alike
    assert result["ours_pairs_per_s"] > 0 and result["skimage_pairs_per_s"] > 0


def test_model_benchmark_and_summary(tiny_synth: Path) -> None:
    cpu = torch.device("cpu")
    models = {
        name: bench_model(name, device=cpu, size=32, batch=1, latency_size=(32, 48), repeats=1)
        for name in ("identity", "nafnet_tiny")
    }
    assert models["identity"]["train_images_per_s"] is None and models["identity"]["latency_tlc_ms"] is None
    naf = models["nafnet_tiny"]
    assert naf["train_images_per_s"] > 0 and naf["latency_ms"] > 0 and naf["latency_tlc_ms"] > 0
    loader = bench_loader(tiny_synth, size=32, batch=2, workers=0, batches=2)
    assert loader["images_per_s"] > 0
    payload = {
        "machine": {"device": "cpu", "cpu": "X", "threads": 1, "torch": "2"},
        "size": 32,
        "batch": 1,
        "latency_size": [32, 48],
        "repeats": 1,
        "peak_tflops": None,
        "models": models,
        "metrics": bench_metrics(pairs=1, size=16),
        "loader": loader,
    }
    text = _markdown(payload)
    assert "| identity | 0 | not measured |" in text and "| nafnet_tiny | 290,715 |" in text
