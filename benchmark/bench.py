"""Benchmarks: ``python -m benchmark.bench [models|protocols|all] ...`` (no command = ``all``: both).

``models`` measures, for each model: training images/s at ``--size`` (the training loop's own step,
``benchmark.train.training_runner`` + backward + AdamW step, fp32 eager), the FLOP utilisation that implies (training
FLOPs taken as 3x the forward's, counted by ``torch.utils.flop_counter``, over ``--peak-tflops`` when the device's
peak is known), inference latency at ``--latency-size`` with and without TLC (synchronised on CUDA), peak memory (CUDA).
Then, for ``--mode-models``, training images/s under each speed mode (``TRAIN_MODES``: bf16 autocast,
channels_last, ``torch.compile``) against fp32 eager; metric throughput (our ``gaussian2d`` SSIM on the bench device
vs scikit-image's on the same pairs); and loader throughput: ``PairedDataset`` random crops of 1280x720 PNG pairs
(GoPro's frame size, written to a temporary folder from scikit-image's photographs), decoding the PNG per item vs
reading the memory-mapped decode cache, with 0 and ``--workers`` DataLoader workers, set against what each model
consumes per second (the "loader headroom"; below 1 the loader is the bottleneck). It writes
``results/bench/<device>.json`` and ``results/bench/<device>.md``. CPU default: the pipeline's CPU-sized models.

``protocols`` times the scoring of one 1280x720 pair (GoPro's frame size) under each dataset protocol, i.e.
``benchmark.evaluate.score`` on a (1, 3, 720, 1280) batch: 8-bit rounding, PSNR and the protocol's SSIM variants, and
for RealBlur the intensity matching, ECC alignment and masked scores. The pair is a photograph (scikit-image's
astronaut, resized) against a copy shifted by (2, -3) pixels with a gain, so ECC has real work to do. Results are the
median of ``--repeats`` runs and are written to ``results/bench/protocols-<cpu>.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark import io
from benchmark.complexity import cpu_name, median_seconds
from benchmark.config import CONF_DIR, Protocol, build, project_root


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    gt = F.interpolate(photo, size=(740, 1300), mode="bicubic", align_corners=False).clamp(0, 1)
    pred = (0.9 * gt[..., 2:722, 0:1280] + 0.03).clamp(0, 1)
    return pred, gt[..., 0:720, 3:1283].contiguous()


def bench_protocols(repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds to score one 1280x720 pair under each conf/dataset protocol, with the scores it gave."""
    import yaml

    from benchmark.evaluate import score

    pred, gt = _pair()
    out: dict[str, dict[str, float]] = {}
    for path in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        protocol = build(Protocol, yaml.safe_load(path.read_text())["protocol"], f"{path.stem}.protocol")
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
    """Training images/s of model ``name`` under ``TRAIN_MODES[mode]``: the training loop's step on random data.

    The step is ``benchmark.train.training_runner`` (forward_train + the model's loss, in the mode's memory format,
    compiled when asked) under the mode's autocast, then backward and an AdamW step, as ``benchmark.train`` runs it.
    ``None`` for a model with nothing to train. ``torch.compile`` compiles during the warm-up step, which is not
    timed.
    """
    from benchmark.train import training_runner
    from models import create_model

    flags = TRAIN_MODES[mode]
    torch.manual_seed(0)
    model = create_model(name).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    optim = torch.optim.AdamW(params, lr=1e-4)
    memory_format = torch.channels_last if flags["channels_last"] else torch.contiguous_format
    lq = torch.rand(batch, 3, size, size, device=device).to(memory_format=memory_format)
    gt = torch.rand(batch, 3, size, size, device=device).to(memory_format=memory_format)
    model.train()
    runner = training_runner(
        model, device=device, channels_last=flags["channels_last"], compile=flags["compile"], data_parallel=False
    )

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=flags["bf16"]):
            total = runner(lq, gt)["total"]
        total.backward()
        optim.step()

    return batch / median_seconds(step, device, repeats)


def bench_model(
    name: str, *, device: torch.device, size: int, batch: int, latency_size: tuple[int, int], repeats: int
) -> dict[str, float | None]:
    """Training throughput, FLOP rate, latency with and without TLC, and peak memory of one model."""
    from benchmark.complexity import count_macs
    from benchmark.tlc import count_local_layers, to_local
    from models import create_model

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
    """SSIM pairs/s: ours (``gaussian2d``, piq in float64, one batched call on ``device``) vs scikit-image (CPU,
    one pair at a time) on the same 8-bit pairs."""
    import numpy as np
    from skimage.metrics import structural_similarity

    from benchmark.metrics import ssim

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
    import tempfile

    from benchmark.data import PairedDataset, build_cache, find_pairs

    with tempfile.TemporaryDirectory(prefix="msfs-bench-loader-") as tmp:
        data_root = root if root is not None else write_frames(Path(tmp) / "frames", pairs=pairs)
        cache = Path(tmp) / "cache"
        pairs_found = find_pairs(data_root / "train")
        start = time.perf_counter()
        stats = build_cache(pairs_found, cache, "train")
        build_seconds = time.perf_counter() - start
        height, width = pairs_found[0].height, pairs_found[0].width
        rows = []
        for source in ("png", "cache"):
            dataset = PairedDataset(
                data_root, "train", crop_size=size, augment="flips", seed=0, cache=cache if source == "cache" else None
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


def _markdown(payload: dict) -> str:
    m = payload["machine"]
    nm = "not measured"

    def f(value: float | None, digits: int = 1) -> str:
        return nm if value is None else f"{value:,.{digits}f}"

    loader = payload["loader"]
    best_loader = loader["best_images_per_s"]
    lines = [
        f"# Benchmark: {m.get('gpu') or m['cpu']} ({m['device']}, {m['threads']} threads, torch {m['torch']})",
        "",
        f"Training at {payload['size']}x{payload['size']}, batch {payload['batch']}, fp32 eager; latency at "
        f"{payload['latency_size'][0]}x{payload['latency_size'][1]}, batch 1; medians of {payload['repeats']} after a "
        "warm-up. FLOP rate: 3x the forward's counted FLOPs per step. Loader headroom: the best loader configuration's "
        "images/s over the model's training images/s (below 1, the loader is the bottleneck).",
        "",
        "| Model | Parameters | Train images/s | Train TFLOP/s | Utilisation | Latency (ms) | Latency TLC (ms) | "
        "TLC overhead | Peak memory (MiB) | Loader headroom |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = payload.get("peak_tflops")
    for name, r in payload["models"].items():
        util = f"{100 * r['train_tflops'] / peak:.1f}%" if peak and r["train_tflops"] else nm
        over = (
            f"{100 * (r['latency_tlc_ms'] / r['latency_ms'] - 1):+.1f}%"
            if r["latency_tlc_ms"] and r["latency_ms"]
            else "no TLC layer"
        )
        headroom = f"{best_loader / r['train_images_per_s']:,.1f}x" if r["train_images_per_s"] else "nothing to train"
        lines.append(
            f"| {name} | {r['parameters']:,} | {f(r['train_images_per_s'])} | {f(r['train_tflops'], 3)} | {util} | "
            f"{f(r['latency_ms'])} | {f(r['latency_tlc_ms'])} | {over} | {f(r['peak_memory_mib'], 0)} | {headroom} |"
        )
    modes = payload.get("modes") or {}
    if modes:
        names = list(next(iter(modes.values())))
        lines += [
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
                nm if v is None else f"{v:,.1f}" + (f" ({v / base:.2f}x)" if base and k != "fp32" else "")
                for k, v in rates.items()
            ]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    metric = payload["metrics"]
    lines += [
        "",
        f"Metric throughput ({metric['size']}x{metric['size']} pairs): ours (`gaussian2d`, piq float64, batched on "
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
        "",
        "Generated by `python -m benchmark.bench`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="all", choices=("all", "models", "protocols"))
    parser.add_argument("--models", nargs="+", default=None, help="default: pipeline models on CPU, full size on CUDA")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--latency-size", type=int, nargs=2, default=(720, 1280))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the utilisation column")
    parser.add_argument(
        "--mode-models", nargs="*", default=None, help="models timed under each speed mode (default: MSFS-Net's)"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=None,
        choices=tuple(TRAIN_MODES),
        help="speed modes (default: all four on CUDA; fp32, bf16 and bf16_cl on CPU, where compiling takes minutes)",
    )
    parser.add_argument("--workers", type=int, default=None, help="loader workers besides 0 (default: 2, 8 on CUDA)")
    parser.add_argument("--loader-pairs", type=int, default=8, help="1280x720 pairs in the loader's temporary set")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.command in ("all", "models"):
        code = _main_models(args, parser)
        if code or args.command == "models":
            return code
    return _main_protocols(args)


def _main_protocols(args: argparse.Namespace) -> int:
    results = bench_protocols(args.repeats)
    payload = {
        "machine": {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "repeats": args.repeats,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "protocols": results,
    }
    path = project_root() / "results" / "bench" / f"protocols-cpu-{torch.get_num_threads()}threads.json"
    io.write_json(path, payload)
    for name, r in results.items():
        extras = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "seconds")
        print(f"[bench] {name}: {r['seconds'] * 1000:,.0f} ms per 1280x720 pair ({extras})")
    print(f"[bench] wrote {path}")
    return 0


def _main_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from benchmark.complexity import device_slug, machine
    from models import list_models

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    cpu_default = ["identity", "mimo_unet_tiny", "nafnet_tiny", "hinet_tiny", "mprnet_tiny", "msfsnet_tiny"]
    gpu_default = ["mimo_unet", "mimo_unet_plus", "nafnet_w32", "nafnet_w64", "hinet", "mprnet", "msfsnet"]
    names = args.models or (gpu_default if cuda else cpu_default)
    mode_models = args.mode_models if args.mode_models is not None else ["msfsnet" if cuda else "msfsnet_tiny"]
    modes = args.modes or (list(TRAIN_MODES) if cuda else ["fp32", "bf16", "bf16_cl"])
    unknown = sorted((set(names) | set(mode_models)) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}")
    info = machine(device)
    peak = args.peak_tflops
    if peak is None and cuda:
        peak = next((v for k, v in KNOWN_PEAK_TFLOPS.items() if k in str(info.get("gpu", ""))), None)
    results = {}
    for name in names:
        started = time.perf_counter()
        results[name] = bench_model(
            name,
            device=device,
            size=args.size,
            batch=args.batch,
            latency_size=tuple(args.latency_size),
            repeats=args.repeats,
        )
        print(f"[bench] {name}: {results[name]} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    mode_rates: dict[str, dict[str, float | None]] = {}
    for name in mode_models:
        mode_rates[name] = {}
        for mode in modes:
            started = time.perf_counter()
            mode_rates[name][mode] = train_images_per_s(
                name, mode=mode, device=device, size=args.size, batch=args.batch, repeats=args.repeats
            )
            print(
                f"[bench] {name} {mode}: {mode_rates[name][mode]} images/s ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    workers = args.workers if args.workers is not None else (8 if cuda else 2)
    payload = {
        "machine": info,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "batch": args.batch,
        "latency_size": list(args.latency_size),
        "repeats": args.repeats,
        "peak_tflops": peak,
        "models": results,
        "modes": mode_rates,
        "metrics": bench_metrics(device=device),
        "loader": bench_loader(
            size=min(args.size, 256),
            batch=max(args.batch, 4),
            workers=sorted({0, workers}),
            pairs=args.loader_pairs,
            pin_memory=cuda,
        ),
    }
    slug = device_slug(info)
    json_path = project_root() / "results" / "bench" / f"{slug}.json"
    io.write_json(json_path, payload)
    md_path = json_path.with_suffix(".md")
    io.write_text(md_path, _markdown(payload))
    print(f"[bench] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
