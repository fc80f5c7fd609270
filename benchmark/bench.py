"""Benchmarks: ``python -m benchmark.bench {models,protocols} ...``.

``models`` measures, for each model: training images/s at ``--size`` (forward_train + loss + backward + AdamW step),
the FLOP utilisation that implies (training FLOPs taken as 3x the forward's, counted by ``torch.utils.flop_counter``,
over ``--peak-tflops`` when the device's peak is known), inference latency at ``--latency-size`` with and without
TLC (synchronised on CUDA), peak memory (CUDA); plus metric throughput (our ``gaussian2d`` SSIM vs scikit-image's on
the same pairs) and loader throughput (``PairedDataset`` random crops, images/s). It writes
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


def bench_model(
    name: str, *, device: torch.device, size: int, batch: int, latency_size: tuple[int, int], repeats: int
) -> dict[str, float | None]:
    """Training throughput, FLOP rate, latency with and without TLC, and peak memory of one model."""
    from benchmark.complexity import count_macs
    from benchmark.tlc import count_local_layers, to_local
    from models import create_model

    torch.manual_seed(0)
    model = create_model(name).to(device)
    out: dict[str, float | None] = {"parameters": model.num_parameters}
    params = [p for p in model.parameters() if p.requires_grad]
    train_flops = 3 * 2 * count_macs(name, (size, size)) * batch  # forward + ~2x for backward
    out["train_gflop_per_step"] = train_flops / 1e9
    if params:
        optim = torch.optim.AdamW(params, lr=1e-4)
        lq = torch.rand(batch, 3, size, size, device=device)
        gt = torch.rand(batch, 3, size, size, device=device)
        model.train()

        def step() -> None:
            optim.zero_grad(set_to_none=True)
            model.loss(model.forward_train(lq, gt), gt)["total"].backward()
            optim.step()

        seconds = median_seconds(step, device, repeats)
        out["train_images_per_s"] = batch / seconds
        out["train_tflops"] = train_flops / seconds / 1e12
    else:
        out["train_images_per_s"] = out["train_tflops"] = None
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


def bench_metrics(pairs: int = 8, size: int = 256) -> dict[str, float]:
    """SSIM pairs/s: ours (``gaussian2d``, piq in float64) vs scikit-image on the same 8-bit pairs."""
    import numpy as np
    from skimage.metrics import structural_similarity

    from benchmark.metrics import ssim

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(pairs, 3, size, size, generator=g).mul(255).round().div(255)
    pred = (0.8 * gt + 0.2 * torch.rand(gt.shape, generator=g)).mul(255).round().div(255)
    start = time.perf_counter()
    ours = ssim(pred, gt)
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
        "ours_pairs_per_s": pairs / t_ours,
        "skimage_pairs_per_s": pairs / t_ref,
        "max_abs_difference": float(np.max(np.abs(ours.numpy() - np.array(ref)))),
    }


def bench_loader(root: Path, *, size: int, batch: int, workers: int, batches: int = 10) -> dict[str, float]:
    """Training-loader images/s: random ``size`` crops of ``root``'s train split (PNG decode each time)."""
    from benchmark.data import PairedDataset

    dataset = PairedDataset(root, "train", crop_size=size, augment="flips", seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    start, seen = time.perf_counter(), 0
    for i, item in enumerate(loader):
        seen += item["lq"].shape[0]
        if i + 1 >= batches:
            break
    return {"images_per_s": seen / (time.perf_counter() - start), "workers": workers, "size": size}


def _markdown(payload: dict) -> str:
    m = payload["machine"]
    nm = "not measured"

    def f(value: float | None, digits: int = 1) -> str:
        return nm if value is None else f"{value:,.{digits}f}"

    lines = [
        f"# Benchmark: {m.get('gpu') or m['cpu']} ({m['device']}, {m['threads']} threads, torch {m['torch']})",
        "",
        f"Training at {payload['size']}x{payload['size']}, batch {payload['batch']}; latency at "
        f"{payload['latency_size'][0]}x{payload['latency_size'][1]}, batch 1; medians of {payload['repeats']} after a "
        "warm-up. FLOP rate: 3x the forward's counted FLOPs per step.",
        "",
        "| Model | Parameters | Train images/s | Train TFLOP/s | Utilisation | Latency (ms) | Latency TLC (ms) | "
        "TLC overhead | Peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = payload.get("peak_tflops")
    for name, r in payload["models"].items():
        util = f"{100 * r['train_tflops'] / peak:.1f}%" if peak and r["train_tflops"] else nm
        over = (
            f"{100 * (r['latency_tlc_ms'] / r['latency_ms'] - 1):+.1f}%"
            if r["latency_tlc_ms"] and r["latency_ms"]
            else "no TLC layer"
        )
        lines.append(
            f"| {name} | {r['parameters']:,} | {f(r['train_images_per_s'])} | {f(r['train_tflops'], 3)} | {util} | "
            f"{f(r['latency_ms'])} | {f(r['latency_tlc_ms'])} | {over} | {f(r['peak_memory_mib'], 0)} |"
        )
    metric, loader = payload["metrics"], payload["loader"]
    lines += [
        "",
        f"Metric throughput ({metric['size']}x{metric['size']} pairs): ours (`gaussian2d`, piq float64) "
        f"{metric['ours_pairs_per_s']:.1f} pairs/s, scikit-image {metric['skimage_pairs_per_s']:.1f} pairs/s "
        f"(max difference {metric['max_abs_difference']:.1e}).",
        f"Loader throughput ({loader['size']} px random crops, PNG decode, {loader['workers']} workers): "
        f"{loader['images_per_s']:.1f} images/s.",
        "",
        "Generated by `python -m benchmark.bench models`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    proto = sub.add_parser("protocols", help="time scoring one 1280x720 pair under each dataset protocol")
    proto.add_argument("--repeats", type=int, default=3)
    mod = sub.add_parser("models", help="training/inference speed, TLC overhead, metric and loader throughput")
    mod.add_argument("--models", nargs="+", default=None, help="default: pipeline models on CPU, full size on CUDA")
    mod.add_argument("--size", type=int, default=256)
    mod.add_argument("--batch", type=int, default=2)
    mod.add_argument("--latency-size", type=int, nargs=2, default=(720, 1280))
    mod.add_argument("--repeats", type=int, default=3)
    mod.add_argument("--peak-tflops", type=float, default=None, help="device peak for the utilisation column")
    mod.add_argument("--data", type=Path, default=project_root() / "data" / "synthblur")
    mod.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.command == "models":
        return _main_models(args, parser)
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
    cpu_default = ["identity", "mimo_unet_tiny", "nafnet_tiny", "hinet_tiny", "mprnet_tiny", "msfsnet_tiny"]
    gpu_default = ["mimo_unet", "mimo_unet_plus", "nafnet_w32", "nafnet_w64", "hinet", "mprnet", "msfsnet"]
    names = args.models or (gpu_default if device.type == "cuda" else cpu_default)
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}")
    if not (args.data / "train").is_dir():
        parser.error(f"--data {args.data}: no train split; run `dvc repro fetch@synthblur` first")
    info = machine(device)
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
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
    payload = {
        "machine": info,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "batch": args.batch,
        "latency_size": list(args.latency_size),
        "repeats": args.repeats,
        "peak_tflops": peak,
        "models": results,
        "metrics": bench_metrics(),
        "loader": bench_loader(args.data, size=min(args.size, 256), batch=args.batch * 2, workers=args.workers),
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
