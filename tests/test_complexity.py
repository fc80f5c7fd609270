"""benchmark.tools.complexity: MAC counts against an independent per-layer derivation, the rendered table, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.complexity import main
from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.reporting.complexity_table import render_complexity_table
from benchmark.tools.complexity import count_macs, measure
from models import create_model


def _layout(results: Path) -> Layout:
    """The harness's paths with the results folder moved to ``results``."""
    return Layout(PathsConfig(results=str(results)))


def _hooked_macs(name: str, size: tuple[int, int]) -> int:
    """MACs of every convolution from its actual input/output shapes, recorded by forward hooks."""
    model = create_model(name).eval()
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d | nn.ConvTranspose2d)
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets every kernel tap once
            total += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        else:  # every output value is a dot product over in/groups x kh x kw taps
            total += output.numel() * (module.in_channels // module.groups) * kh * kw

    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, 3, *size))
    return total


@pytest.mark.parametrize("name", ["nafnet_tiny", "hinet_tiny", "mprnet_tiny", "mimo_unet_tiny"])
def test_macs_equal_the_per_layer_sum(name: str) -> None:
    assert count_macs(name, (64, 48)) == _hooked_macs(name, (64, 48))


def test_macs_known_values() -> None:
    assert count_macs("identity", (256, 256)) == 0
    # Fully convolutional: 4x the pixels, exactly 4x the MACs, as long as no pooled 1x1 branch is involved.
    assert count_macs("hinet_tiny", (128, 128)) == 4 * count_macs("hinet_tiny", (64, 64))
    # MIMO-UNet++ runs MIMO-UNet+ four times (rotations); a square input has no extra padding.
    assert count_macs("mimo_unet_plusplus", (64, 64)) == 4 * count_macs("mimo_unet_plus", (64, 64))


def test_run_writes_json_and_table_and_marks_unmeasured(tmp_path: Path) -> None:
    json_path, table_path = measure(
        ["identity", "nafnet_tiny"],
        layout=_layout(tmp_path),
        repeats=1,
        latency=True,
        device=torch.device("cpu"),
        progress=False,
    )
    record = json.loads(json_path.read_text())
    assert json_path.name == f"cpu-{torch.get_num_threads()}threads.json"
    tiny = next(m for m in record["models"] if m["model"] == "nafnet_tiny")
    assert tiny["parameters"] == 290_715 and tiny["latency_ms"] > 0 and tiny["peak_memory_mib"] is None
    table = table_path.read_text()
    assert "| nafnet_tiny | 290,715 | 0.4 | 5.0 |" in table
    assert table.count("not measured") == 4  # GPU latency and memory for both models
    assert "- GPU: no run recorded" in table


def test_table_combines_a_cpu_and_a_gpu_run() -> None:
    def rec(latency: float | None, peak: float | None) -> dict:
        return {
            "model": "m",
            "parameters": 10,
            "macs_256": 2_000_000_000,
            "macs_720p": 28_000_000_000,
            "latency_ms": latency,
            "peak_memory_mib": peak,
        }

    cpu = {
        "machine": {"device": "cpu", "cpu": "X", "threads": 2, "torch": "2"},
        "repeats": 3,
        "created": "2026-01-01 00:00:00",
        "models": [rec(1234.0, None)],
    }
    gpu = {
        "machine": {"device": "cuda", "gpu": "H100", "threads": 16, "torch": "2"},
        "repeats": 3,
        "created": "2026-01-02 00:00:00",
        "models": [rec(12.34, 2048.0)],
    }
    table = render_complexity_table([cpu, gpu])
    assert "| m | 10 | 2.0 | 28.0 | 1,234 | 12.3 | 2,048 |" in table
    assert "- GPU: H100" in table and "not measured" not in table


def test_cli_rejects_unknown_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--models", "nafnet_w128"])
    assert err.value.code == 2
    assert "unknown model(s) ['nafnet_w128']" in capsys.readouterr().err


def test_a_run_over_some_models_keeps_the_others(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    layout = _layout(tmp_path)
    measure(["identity", "nafnet_tiny"], layout=layout, repeats=1, latency=False, device=cpu, progress=False)
    json_path, _ = measure(["identity"], layout=layout, repeats=1, latency=False, device=cpu, progress=False)
    assert [m["model"] for m in json.loads(json_path.read_text())["models"]] == ["identity", "nafnet_tiny"]
