"""Model complexity, measured: ``python -m benchmark.complexity [--models NAME ...] [--repeats N] [--no-latency]``.

For each registered model: parameters (as ``parameters()`` counts them, shared modules once), multiply-accumulates
at 256x256 and at 1280x720 (GoPro's frame size), latency on this machine's CPU at 256x256 and, when CUDA is
available, latency at 1280x720 (synchronised) with the peak memory the forward allocated.

- MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, transposed convolutions, matrix
  products; elementwise operations, pooling, interpolation and normalisation are not counted) run on the ``meta``
  device, so even a 1280x720 count of the largest model costs no memory and no time. MACs = counted FLOPs / 2. The
  count is of ``model(blur)`` as evaluated, i.e. with the model's padding and, for MIMO-UNet++, its four rotations.
- Latency is the median over ``--repeats`` timed forwards after one warm-up, under ``torch.inference_mode``, batch 1,
  float32; on CUDA each forward is bracketed by ``torch.cuda.synchronize()``.

Each run writes ``<results>/complexity/<device>.json`` (atomic) with the machine it ran on (a run over some models
replaces their records and keeps the rest, when machine and repeats are the same); the Markdown table
``<results>/tables/complexity.md`` is then rendered from every JSON in that folder
(``benchmark.reporting.complexity_table``), so a CPU run here and a GPU run on another machine end up side by side. A
figure a run did not measure shows as "not measured".
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.core import atomic
from benchmark.core.device import synchronize
from benchmark.core.layout import Layout
from benchmark.reporting.complexity_table import render_complexity_table
from models import DeblurModel, create_model

SIZES = {"256": (256, 256), "720p": (720, 1280)}
"""(H, W) of the counted inputs: the training crop and a GoPro frame."""


@dataclass(frozen=True)
class Complexity:
    """One model's figures; ``None`` = not measured on this machine."""

    model: str
    parameters: int
    macs_256: int
    macs_720p: int
    latency_ms: float | None
    latency_size: str
    peak_memory_mib: float | None


def count_macs(name: str, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one ``model(blur)`` on a (1, 3, H, W) input, counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name).eval()
        blur = torch.empty(1, 3, *size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(blur)
    return counter.get_total_flops() // 2


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call (which pays for allocation,
    autotuning and caches); on CUDA each call is bracketed by ``torch.cuda.synchronize``."""
    times = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_latency(model: DeblurModel, size: tuple[int, int], *, device: torch.device, repeats: int) -> float:
    """Median seconds of ``model(blur)`` for a (1, 3, H, W) input on ``device`` after one warm-up forward."""
    model = model.to(device).eval()
    blur = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        return median_seconds(lambda: model(blur), device, repeats)


def profile_model(name: str, *, device: torch.device, repeats: int, latency: bool) -> Complexity:
    """All figures for one model; CPU latency at 256x256, CUDA latency and peak memory at 1280x720."""
    torch.manual_seed(0)
    model = create_model(name)
    latency_ms = peak = None
    size_key = "720p" if device.type == "cuda" else "256"
    if latency:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        latency_ms = measure_latency(model, SIZES[size_key], device=device, repeats=repeats) * 1000
        if device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return Complexity(
        model=name,
        parameters=model.num_parameters,
        macs_256=count_macs(name, SIZES["256"]),
        macs_720p=count_macs(name, SIZES["720p"]),
        latency_ms=latency_ms,
        latency_size=size_key,
        peak_memory_mib=peak,
    )


def machine(device: torch.device) -> dict[str, object]:
    """What the figures were measured on."""
    info: dict[str, object] = {
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_slug(info: dict[str, object]) -> str:
    """File name of a run's JSON: ``cpu-<n>threads`` or ``cuda-<gpu name>``."""
    if info["device"] == "cuda":
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", str(info["gpu"]).lower()).strip("-")
    return f"cpu-{info['threads']}threads"


def measure(
    names: Sequence[str], *, layout: Layout, repeats: int, latency: bool, device: torch.device, progress: bool = True
) -> tuple[Path, Path]:
    """Profile ``names`` on ``device``, write this run's JSON and re-render the table; returns both paths."""
    info = machine(device)
    records = []
    for name in names:
        started = time.perf_counter()
        rec = profile_model(name, device=device, repeats=repeats, latency=latency)
        records.append(asdict(rec))
        if progress:
            lat = f"{rec.latency_ms:,.1f} ms" if rec.latency_ms is not None else "not measured"
            print(
                f"[complexity] {name}: {rec.parameters:,} params, {rec.macs_720p / 1e9:,.1f} GMACs at 1280x720, "
                f"latency {lat} ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    json_path = layout.complexity / f"{device_slug(info)}.json"
    # A run over some models updates their records and keeps the others the same machine measured before.
    kept = []
    if json_path.is_file():
        try:
            previous = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            previous = {}
        if previous.get("machine") == info and previous.get("repeats") == repeats:
            kept = [r for r in previous.get("models", []) if r["model"] not in set(names)]
    payload = {
        "machine": info,
        "repeats": repeats,
        "latency_measured": latency,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "models": sorted(kept + records, key=lambda r: r["model"]),
    }
    atomic.write_json(json_path, payload)
    runs = [json.loads(p.read_text()) for p in sorted(layout.complexity.glob("*.json"))]
    table_path = layout.tables / "complexity.md"
    atomic.write_text(table_path, render_complexity_table(runs))
    return json_path, table_path
