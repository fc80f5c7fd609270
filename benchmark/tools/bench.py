"""Benchmarks, measured by ``python -m benchmark.bench [models|protocols|all] ...`` (no command = ``all``: both).

``models`` measures, for each model: training images/s at ``--size`` (the training loop's own step,
``benchmark.training.step.TrainStep``: forward, loss, backward, AdamW step, fp32 eager), the FLOP utilisation that
implies (training FLOPs taken as 3x the forward's, counted by ``torch.utils.flop_counter``, over ``--peak-tflops`` when
the device's peak is known), inference latency at ``--latency-size`` with and without TLC (synchronised on CUDA), peak
memory (CUDA). Then, for ``--mode-models``, training images/s under each speed mode (``TRAIN_MODES``: bf16 autocast,
channels_last, ``torch.compile``) against fp32 eager; metric throughput (our ``gaussian2d`` SSIM on the bench device
vs scikit-image's on the same pairs); and loader throughput: ``PairedDataset`` random crops of 1280x720 PNG pairs
(GoPro's frame size, written to a temporary folder from scikit-image's photographs), decoding the PNG per item vs
reading the memory-mapped decode cache, with 0 and ``--workers`` DataLoader workers, set against what each model
consumes per second (the "loader headroom"; below 1 the loader is the bottleneck). It writes
``<results>/bench/<device>.json`` and ``.md``. CPU default: the pipeline's CPU-sized models.

``protocols`` times the scoring of one 1280x720 pair (GoPro's frame size) under each dataset protocol, i.e.
``benchmark.scoring.protocol.score`` on a (1, 3, 720, 1280) batch: 8-bit rounding, PSNR and the protocol's SSIM
variants, and for RealBlur the intensity matching, ECC alignment and masked scores. The pair is a photograph
(scikit-image's astronaut, resized) against a copy shifted by (2, -3) pixels with a gain, so ECC has real work to do.
Results are the median of ``--repeats`` runs and are written to ``<results>/bench/protocols-<cpu>.json``.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.core import atomic
from benchmark.core.config import load_config
from benchmark.core.layout import CONF_DIR, Layout
from benchmark.core.sections import OptimizerConfig
from benchmark.data.cache import build_cache
from benchmark.data.dataset import PairedDataset
from benchmark.data.pairs import find_pairs
from benchmark.evaluation.tlc import count_local_layers, to_local
from benchmark.scoring.protocol import score
from benchmark.tools.complexity import count_macs, cpu_name, device_slug, machine, median_seconds
from benchmark.training.schedule import build_optimizer
from benchmark.training.step import TrainStep, training_runner
from models import create_model, list_models


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    gt = F.interpolate(photo, size=(740, 1300), mode="bicubic", align_corners=False).clamp(0, 1)
    pred = (0.9 * gt[..., 2:722, 0:1280] + 0.03).clamp(0, 1)
    return pred, gt[..., 0:720, 3:1283].contiguous()


def bench_protocols(repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds to score one 1280x720 pair under each conf/dataset protocol, with the scores it gave."""
    pred, gt = _pair()
    out: dict[str, dict[str, float]] = {}
    for path in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        protocol = load_config([f"dataset={path.stem}"]).dataset.protocol
        times, scores = [], {}
        for _ in range(repeats):
            start = time.perf_counter()
            scores = score(pred, gt, protocol)
            times.append(time.perf_counter() - start)
        out[path.stem] = {"seconds": statistics.median(times), **{k: float(v[0]) for k, v in scores.items()}}
    return out


KNOWN_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peaks (vendor data sheets, SXM parts) by GPU name fragment; CPU peaks are not assumed."""

TRAIN_MODES: dict[str, dict[str, bool]] = {
    "fp32": {"bf16": False, "channels_last": False, "compile": False},
    "bf16": {"bf16": True, "channels_last": False, "compile": False},
    "bf16_cl": {"bf16": True, "channels_last": True, "compile": False},
    "bf16_cl_compile": {"bf16": True, "channels_last": True, "compile": True},
}
"""Training speed modes: the ``train.bf16`` / ``train.channels_last`` / ``train.compile`` settings they stand for."""


def train_images_per_s(
    name: str, *, mode: str, device: torch.device, size: int, batch: int, repeats: int
) -> float | None:
    """Training images/s of model ``name`` under ``TRAIN_MODES[mode]``: the training loop's own step on random data.

    The step is ``benchmark.training.step.TrainStep`` over ``training_runner`` (forward_train + the model's loss, in
    the mode's memory format, compiled when asked) with AdamW at a constant rate, exactly as ``benchmark.train``
    runs it (including the non-finite guard's host sync). ``None`` for a model with nothing to train.
    ``torch.compile`` compiles during the warm-up step, which is not timed.
    """
    flags = TRAIN_MODES[mode]
    torch.manual_seed(0)
    model = create_model(name).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    optimizer = build_optimizer(params, OptimizerConfig(name="adamw", lr=1e-4))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    lq = torch.rand(batch, 3, size, size, device=device)
    gt = torch.rand(batch, 3, size, size, device=device)
    model.train()
    runner = training_runner(
        model, device=device, channels_last=flags["channels_last"], compile=flags["compile"], data_parallel=False
    )
    step = TrainStep(
        runner, optimizer, scheduler, device=device, bf16=flags["bf16"], channels_last=flags["channels_last"]
    )
    return batch / median_seconds(lambda: step(lq, gt), device, repeats)


def bench_model(
    name: str, *, device: torch.device, size: int, batch: int, latency_size: tuple[int, int], repeats: int
) -> dict[str, float | None]:
    """Training throughput, FLOP rate, latency with and without TLC, and peak memory of one model."""
    train_flops = 3 * 2 * count_macs(name, (size, size)) * batch  # forward + ~2x for backward
    rate = train_images_per_s(name, mode="fp32", device=device, size=size, batch=batch, repeats=repeats)
    torch.manual_seed(0)
    model = create_model(name).to(device)
    out: dict[str, float | None] = {"parameters": model.num_parameters, "train_gflop_per_step": train_flops / 1e9}
    out["train_images_per_s"] = rate
    out["train_tflops"] = None if rate is None else train_flops / batch * rate / 1e12
    model.eval()
    blur = torch.rand(1, 3, *latency_size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        out["latency_ms"] = median_seconds(lambda: model(blur), device, repeats) * 1000
    out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    local = to_local(model.cpu(), (size, size)).to(device).eval()
    if count_local_layers(local):
        with torch.inference_mode():
            out["latency_tlc_ms"] = median_seconds(lambda: local(blur), device, repeats) * 1000
    else:
        out["latency_tlc_ms"] = None
    return out


def bench_metrics(pairs: int = 8, size: int = 256, device: torch.device | None = None) -> dict[str, float | str]:
    """SSIM pairs/s: ours (``gaussian2d``, separable float64, one batched call on ``device``) vs scikit-image (CPU,
    one pair at a time) on the same 8-bit pairs."""
    import numpy as np
    from skimage.metrics import structural_similarity

    from benchmark.scoring.metrics import ssim

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(pairs, 3, size, size, generator=g).mul(255).round().div(255)
    pred = (0.8 * gt + 0.2 * torch.rand(gt.shape, generator=g)).mul(255).round().div(255)
    device = device or torch.device("cpu")
    on_device = (pred.to(device), gt.to(device))
    ssim(*(t[:1] for t in on_device))  # warm-up: CUDA context and kernels, not part of the rate
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    ours = ssim(*on_device).cpu()
    t_ours = time.perf_counter() - start
    a = (pred.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    b = (gt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    start = time.perf_counter()
    ref = [
        structural_similarity(
            b[i], a[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        )
        for i in range(pairs)
    ]
    t_ref = time.perf_counter() - start
    return {
        "size": size,
        "device": device.type,
        "ours_pairs_per_s": pairs / t_ours,
        "skimage_pairs_per_s": pairs / t_ref,
        "max_abs_difference": float(np.max(np.abs(ours.numpy() - np.array(ref)))),
    }


def write_frames(root: Path, *, pairs: int, size: tuple[int, int] = (720, 1280)) -> Path:
    """A train split of ``pairs`` (blur, sharp) PNG pairs of ``size`` (H, W) under ``root``, from scikit-image's
    photographs (real image statistics, so PNG decoding costs what it costs on GoPro frames)."""
    import numpy as np
    from PIL import Image, ImageFilter
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for side in ("blur", "sharp"):
        (root / "train" / side).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        sharp = Image.fromarray(photos[i % len(photos)]).resize(size[::-1], Image.Resampling.BICUBIC)
        blur = np.asarray(sharp.filter(ImageFilter.BoxBlur(4)))
        sharp.save(root / "train" / "sharp" / f"{i:04d}.png")
        Image.fromarray(blur).save(root / "train" / "blur" / f"{i:04d}.png")
    return root


def bench_loader(
    root: Path | None = None,
    *,
    size: int,
    batch: int,
    workers: Sequence[int] = (0,),
    batches: int = 10,
    pairs: int = 8,
    pin_memory: bool = False,
) -> dict[str, object]:
    """Training-loader images/s: random ``size`` crops with flips, as ``benchmark.train`` loads them.

    Each configuration (PNG decode per item, or the memory-mapped decode cache; each worker count) reads ``batches``
    batches of ``batch`` items after one warm-up batch. ``root`` (a dataset with a train split) defaults to a
    temporary folder of ``pairs`` 1280x720 pairs (``write_frames``). Also reports the time to build the cache.
    """
    with tempfile.TemporaryDirectory(prefix="msfs-bench-loader-") as tmp:
        data_root = root if root is not None else write_frames(Path(tmp) / "frames", pairs=pairs)
        cache = Path(tmp) / "cache"
        pairs_found = find_pairs(data_root / "train")
        start = time.perf_counter()
        built = build_cache(pairs_found, cache, "train")
        stats = built.stats
        build_seconds = time.perf_counter() - start
        height, width = pairs_found[0].height, pairs_found[0].width
        rows = []
        for source in ("png", "cache"):
            dataset = PairedDataset(
                data_root, "train", crop_size=size, augment="flips", seed=0, cache=built if source == "cache" else None
            )
            for n in workers:
                draws = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=batch * (batches + 1))
                loader = torch.utils.data.DataLoader(
                    dataset,
                    batch_size=batch,
                    sampler=draws,
                    num_workers=n,
                    pin_memory=pin_memory,
                )
                seen, start = 0, None
                for i, item in enumerate(loader):
                    if i == 0:  # warm-up: worker start-up and first page faults
                        start = time.perf_counter()
                        continue
                    seen += item["lq"].shape[0]
                assert start is not None
                rows.append({"source": source, "workers": n, "images_per_s": seen / (time.perf_counter() - start)})
    return {
        "size": size,
        "batch": batch,
        "frame": [height, width],
        "pin_memory": pin_memory,
        "cache_build_seconds": build_seconds,
        "cache_bytes": stats.total_bytes,
        "cache_entries": stats.entries,
        "rows": rows,
        "best_images_per_s": max(r["images_per_s"] for r in rows),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "not measured" if value is None else f"{value:,.{digits}f}"


def _models_table(payload: dict) -> list[str]:
    best_loader = payload["loader"]["best_images_per_s"]
    lines = [
        "| Model | Parameters | Train images/s | Train TFLOP/s | Utilisation | Latency (ms) | Latency TLC (ms) | "
        "TLC overhead | Peak memory (MiB) | Loader headroom |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = payload.get("peak_tflops")
    for name, r in payload["models"].items():
        util = f"{100 * r['train_tflops'] / peak:.1f}%" if peak and r["train_tflops"] else "not measured"
        over = (
            f"{100 * (r['latency_tlc_ms'] / r['latency_ms'] - 1):+.1f}%"
            if r["latency_tlc_ms"] and r["latency_ms"]
            else "no TLC layer"
        )
        headroom = f"{best_loader / r['train_images_per_s']:,.1f}x" if r["train_images_per_s"] else "nothing to train"
        lines.append(
            f"| {name} | {r['parameters']:,} | {_fmt(r['train_images_per_s'])} | {_fmt(r['train_tflops'], 3)} | "
            f"{util} | {_fmt(r['latency_ms'])} | {_fmt(r['latency_tlc_ms'])} | {over} | "
            f"{_fmt(r['peak_memory_mib'], 0)} | {headroom} |"
        )
    return lines


def _modes_table(modes: dict) -> list[str]:
    if not modes:
        return []
    names = list(next(iter(modes.values())))
    lines = [
        "",
        "Training speed modes (images/s; speed-up over fp32 eager in brackets): "
        + "; ".join(f"`{k}` = {', '.join(f'{f}={v}' for f, v in TRAIN_MODES[k].items())}" for k in names)
        + ".",
        "",
        "| Model | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for model, rates in modes.items():
        base = rates.get("fp32")
        cells = [
            "not measured" if v is None else f"{v:,.1f}" + (f" ({v / base:.2f}x)" if base and k != "fp32" else "")
            for k, v in rates.items()
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _metrics_and_loader(metric: dict, loader: dict) -> list[str]:
    return [
        "",
        f"Metric throughput ({metric['size']}x{metric['size']} pairs): ours (`gaussian2d`, float64, batched on "
        f"{metric.get('device', 'cpu')}) {metric['ours_pairs_per_s']:.1f} pairs/s, scikit-image (CPU) "
        f"{metric['skimage_pairs_per_s']:.1f} pairs/s (max difference {metric['max_abs_difference']:.1e}).",
        "",
        f"Loader throughput ({loader['size']} px random crops with flips of {loader['frame'][0]}x{loader['frame'][1]} "
        f"pairs, batch {loader['batch']}, pinned memory {'on' if loader['pin_memory'] else 'off'}); building the "
        f"decode cache of {loader['cache_entries']} images ({loader['cache_bytes'] / 1e6:,.1f} MB) took "
        f"{loader['cache_build_seconds']:.2f} s:",
        "",
        "| Source | Workers | Images/s |",
        "|---|---:|---:|",
        *(
            f"| {'PNG decode per item' if r['source'] == 'png' else 'memory-mapped uint8 cache'} | {r['workers']} | "
            f"{r['images_per_s']:,.1f} |"
            for r in loader["rows"]
        ),
    ]


def render_bench_markdown(payload: dict) -> str:
    """``results/bench/<device>.md`` from the payload :func:`bench_models` measured."""
    m = payload["machine"]
    lines = [
        f"# Benchmark: {m.get('gpu') or m['cpu']} ({m['device']}, {m['threads']} threads, torch {m['torch']})",
        "",
        f"Training at {payload['size']}x{payload['size']}, batch {payload['batch']}, fp32 eager; latency at "
        f"{payload['latency_size'][0]}x{payload['latency_size'][1]}, batch 1; medians of {payload['repeats']} after a "
        "warm-up. FLOP rate: 3x the forward's counted FLOPs per step. Loader headroom: the best loader configuration's "
        "images/s over the model's training images/s (below 1, the loader is the bottleneck).",
        "",
        *_models_table(payload),
        *_modes_table(payload.get("modes") or {}),
        *_metrics_and_loader(payload["metrics"], payload["loader"]),
        "",
        "Generated by `python -m benchmark.bench`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


def cpu_models() -> tuple[str, ...]:
    """What ``bench models`` measures on a CPU: identity and every CPU-sized (``*_tiny``) model of the registry."""
    return ("identity", *sorted(n for n in list_models() if n.endswith("_tiny")))


def gpu_models() -> tuple[str, ...]:
    """What it measures on CUDA: every registered model with released weights (its conf file's ``release``)."""
    from benchmark.core.config import load_config

    return tuple(n for n in list_models() if load_config([f"model={n}"]).model.release is not None)


def bench_protocols_to(layout: Layout, repeats: int) -> Path:
    """Run :func:`bench_protocols` and write ``<results>/bench/protocols-cpu-<n>threads.json``; returns its path."""
    results = bench_protocols(repeats)
    payload = {
        "machine": {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "repeats": repeats,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "protocols": results,
    }
    path = layout.bench / f"protocols-cpu-{torch.get_num_threads()}threads.json"
    atomic.write_json(path, payload)
    for name, r in results.items():
        extras = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "seconds")
        print(f"[bench] {name}: {r['seconds'] * 1000:,.0f} ms per 1280x720 pair ({extras})")
    return path


def _timed(label: str, fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"[bench] {label}: {out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return out


def bench_models(
    layout: Layout,
    *,
    names: Sequence[str],
    mode_models: Sequence[str],
    modes: Sequence[str],
    size: int,
    batch: int,
    latency_size: tuple[int, int],
    repeats: int,
    peak_tflops: float | None,
    workers: int,
    loader_pairs: int,
) -> tuple[Path, Path]:
    """Measure ``names`` (and ``mode_models`` under each speed mode), SSIM and the loader on this machine's device;
    write ``<results>/bench/<device>.{json,md}``; returns both paths."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    info = machine(device)
    if peak_tflops is None and cuda:
        peak_tflops = next((v for k, v in KNOWN_PEAK_TFLOPS.items() if k in str(info.get("gpu", ""))), None)
    args = {"device": device, "size": size, "batch": batch, "repeats": repeats}
    results = {n: _timed(n, bench_model, n, latency_size=latency_size, **args) for n in names}
    mode_rates = {m: {k: _timed(f"{m} {k}", train_images_per_s, m, mode=k, **args) for k in modes} for m in mode_models}
    payload = {
        "machine": info,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": size,
        "batch": batch,
        "latency_size": list(latency_size),
        "repeats": repeats,
        "peak_tflops": peak_tflops,
        "models": results,
        "modes": mode_rates,
        "metrics": bench_metrics(device=device),
        "loader": bench_loader(
            size=min(size, 256), batch=max(batch, 4), workers=sorted({0, workers}), pairs=loader_pairs, pin_memory=cuda
        ),
    }
    json_path = layout.bench / f"{device_slug(info)}.json"
    atomic.write_json(json_path, payload)
    md_path = json_path.with_suffix(".md")
    atomic.write_text(md_path, render_bench_markdown(payload))
    return json_path, md_path


def bench_speed_to(
    layout: Layout, *, tlc_models: Sequence[str], size: tuple[int, int], repeats: int, tlc_repeats: int, pairs: int
) -> tuple[Path, Path]:
    """Scoring and TLC speed (``benchmark.tools.bench_speed``) on this machine's device, written to
    ``<results>/bench/speed-<device>.{json,md}``; returns both paths."""
    from benchmark.tools.bench_speed import bench_scoring, bench_ssim_frame, bench_tlc, render_speed_markdown

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine(device)
    payload = {
        "machine": info,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "ssim": _timed("ssim", bench_ssim_frame, device, repeats),
        "scoring": _timed("scoring", bench_scoring, pairs, repeats),
        "tlc": _timed("tlc", bench_tlc, tlc_models, device=device, size=size, repeats=tlc_repeats),
    }
    json_path = layout.bench / f"speed-{device_slug(info)}.json"
    atomic.write_json(json_path, payload)
    md_path = json_path.with_suffix(".md")
    atomic.write_text(md_path, render_speed_markdown(payload))
    return json_path, md_path
