"""The speed targets of scoring and TLC, measured side by side in one run (``python -m benchmark.bench speed``).

- SSIM on one 1280x720 pair (GoPro's frame size): ours (``gaussian2d`` and ``matlab3d``, float64) on the bench device,
  on one CPU thread and on all of them, against scikit-image's ``structural_similarity`` on the same pair, with the
  largest score difference (``gaussian2d`` against scikit-image, ``matlab3d`` against scipy's 3-D Gaussian with
  'nearest' borders, the independent volume SSIM of ``tests/test_metrics.py``).
- Scoring throughput of ``score_protocols`` over 1280x720 pairs under the GoPro and RealBlur-J protocols with 0
  (in-process), 1 and N score workers (N = this process's cores), the model being the identity so that only scoring
  is timed.
- TLC per model at ``--latency-size``: latency without TLC, with our local layers and with TLC's own
  (``benchmark.tools.tlc_release``), the float32 box-mean error of both, and peak memory with and without TLC (CPU: the
  peak resident set size of a fresh process that builds the model and runs one forward; CUDA:
  ``max_memory_allocated``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from benchmark.core.config import load_config
from benchmark.evaluation.tlc import box_mean, count_local_layers, to_local
from benchmark.scoring.loop import score_protocols
from benchmark.scoring.metrics import ssim
from benchmark.scoring.pool import default_workers
from benchmark.tools.tlc_release import as_release, box_mean_errors, integral_box_mean, wake_zero_parameters
from models import create_model

__all__ = ["bench_box_mean", "bench_scoring", "bench_ssim_frame", "bench_tlc", "frame_pair", "render_speed_markdown"]


def frame_pair() -> tuple[np.ndarray, np.ndarray]:
    """A GoPro-sized (720 x 1280 x 3 uint8) (prediction, ground truth) pair built by integer arithmetic only, so it is
    the same on every machine: the astronaut tiled, and a copy shifted by (2, -3) px plus a hashed +-12 grey pattern.
    ``tests/test_metrics.py`` holds NAFNet's ``_ssim_3d`` of it as a golden value."""
    from skimage import data

    base = np.tile(data.astronaut(), (2, 3, 1))[:720, :1280]
    idx = np.arange(base.size, dtype=np.int64).reshape(base.shape)
    noise = (idx * 2654435761 % 4093) % 25 - 12
    pred = np.clip(np.roll(base, (2, -3), axis=(0, 1)).astype(np.int64) + noise, 0, 255).astype(np.uint8)
    return pred, base


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best of ``repeats`` timed calls after one warm-up (the machine is shared: the minimum is the least noisy)."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def _with_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def _matlab3d_scipy(pred: np.ndarray, gt: np.ndarray) -> float:
    from scipy import ndimage

    x, y = pred.astype(np.float64), gt.astype(np.float64)

    def g(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, 1.5, mode="nearest", truncate=5 / 1.5)

    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx**2, g(y * y) - my**2, g(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def bench_ssim_frame(device: torch.device, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per 1280x720 pair: ours per variant (1 thread and all, on ``device``) and scikit-image's (CPU)."""
    from skimage.metrics import structural_similarity

    pred, gt = frame_pair()
    t_sk, ref = _best(
        lambda: structural_similarity(
            gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        ),
        repeats,
    )
    x = torch.from_numpy(pred).permute(2, 0, 1)[None].double().div(255).to(device)
    y = torch.from_numpy(gt).permute(2, 0, 1)[None].double().div(255).to(device)
    refs = {"gaussian2d": float(ref), "matlab3d": _matlab3d_scipy(pred, gt)}
    out = {}
    for variant, reference in refs.items():

        def run(v: str = variant) -> float:
            value = ssim(x, y, v).item()  # .item() synchronises a CUDA device
            return value

        t_all, value = _best(run, repeats)
        row = {"seconds": t_all, "skimage_seconds": t_sk, "difference": abs(value - reference)}
        if device.type == "cpu":
            row["seconds_1_thread"] = _best(_with_threads(1, run), repeats)[0]
        out[variant] = row
    return out


class _Stored(torch.nn.Module):
    """``model(lq) -> lq``: scoring throughput without inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def bench_scoring(pairs: int, repeats: int) -> dict[str, object]:
    """Pairs/s of ``score_protocols`` on ``pairs`` 1280x720 pairs, per protocol and number of score workers."""
    pred, gt = (torch.from_numpy(a).permute(2, 0, 1).float().div(255) for a in frame_pair())
    loader = [{"lq": pred[None], "gt": gt[None], "name": [f"pair{i}"]} for i in range(pairs)]
    n = default_workers()
    out: dict[str, object] = {"pairs": pairs, "cores": n, "protocols": {}}
    for dataset in ("gopro", "realblur_j"):
        protocol = load_config([f"dataset={dataset}"]).dataset.protocol
        rates, reference = {}, None
        for workers in sorted({0, 1, n}):
            seconds, scores = _best(
                lambda w=workers, p=protocol: score_protocols(_Stored(), loader, (p,), progress=False, workers=w)[0],
                repeats,
            )
            reference = reference or scores.values
            rates[str(workers)] = {"pairs_per_s": pairs / seconds, "identical": scores.values == reference}
        out["protocols"][dataset] = rates
    return out


def _forward_seconds(model: torch.nn.Module, blur: torch.Tensor) -> float:
    """Seconds of one forward pass (synchronised on CUDA)."""
    start = time.perf_counter()
    with torch.inference_mode():
        model(blur)
    if blur.device.type == "cuda":
        torch.cuda.synchronize(blur.device)
    return time.perf_counter() - start


VARIANTS = ("plain", "ours", "tlc")
"""TLC bench variants: the network as built, converted by ``to_local`` (ours), and that with TLC's own layers."""


def build_variant(name: str, variant: str) -> torch.nn.Module | None:
    """Model ``name`` (seeded, zero layer scales woken) as ``variant``; None when TLC has nothing to convert."""
    torch.manual_seed(0)
    model = wake_zero_parameters(create_model(name).eval())
    if variant == "plain":
        return model
    # TLC's own layers replace its pools one for one, so they go into the unfused form of the same conversion.
    local = to_local(model, (256, 256), fuse=variant == "ours").eval()
    if not count_local_layers(local):
        return None
    return local if variant == "ours" else as_release(local).eval()


def time_variant(name: str, variant: str, size: tuple[int, int], repeats: int, device: torch.device) -> dict:
    """Seconds of ``repeats`` forwards at ``size`` after a 64x64 warm-up, and the peak memory (MiB) meanwhile: CUDA's
    ``max_memory_allocated``, or on the CPU this process's peak resident set size (run it in a fresh process)."""
    import resource

    model = build_variant(name, variant)
    assert model is not None
    model = model.to(device)
    _forward_seconds(model, torch.rand(1, 3, 64, 64, device=device))
    blur = torch.rand(1, 3, *size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = [_forward_seconds(model, blur) for _ in range(repeats)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"seconds": seconds, "peak_mib": peak}


def _time_in_fresh_process(name: str, variant: str, size: tuple[int, int], repeats: int) -> dict:
    """:func:`time_variant` on the CPU in a new interpreter, so that its peak RSS is this variant's alone."""
    args = [name, variant, str(size[0]), str(size[1]), str(repeats)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.tools.bench_speed", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench of {name} ({variant}) failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_tlc(
    names: Sequence[str], *, device: torch.device, size: tuple[int, int], repeats: int, check_size=(320, 512)
) -> dict[str, object]:
    """TLC latency and peak memory per model (plain, ours, TLC's own layers), the largest output difference of ours
    and TLC's at ``check_size`` (beyond the 256 px training size, so the windows are local), and the box-mean error of
    both. On the CPU each variant runs in a fresh process (peak RSS is per variant), in the order of ``VARIANTS``."""
    rows = {}
    for name in names:
        ours, release = build_variant(name, "ours"), build_variant(name, "tlc")
        if ours is None or release is None:
            continue
        probe = torch.rand(1, 3, *check_size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            difference = (ours(probe) - release(probe)).abs().max().item()
        del ours, release
        row: dict[str, float] = {"max_output_difference": difference}
        for variant in VARIANTS:
            if device.type == "cuda":
                result = time_variant(name, variant, size, repeats, device)
            else:
                result = _time_in_fresh_process(name, variant, size, repeats)
            row[f"{variant}_ms"] = 1000 * statistics.median(result["seconds"])
            row[f"{variant}_peak_mib"] = result["peak_mib"]
        rows[name] = row
        print(f"[bench] tlc {name}: {json.dumps(row)}", file=sys.stderr)
    return {
        "size": list(size),
        "check_size": list(check_size),
        "repeats": repeats,
        "models": rows,
        "box_mean_error": box_mean_errors(),
        "box_mean_seconds": bench_box_mean(device, max(repeats, 3)),
    }


def bench_box_mean(device: torch.device, repeats: int, shape=(1, 96, 720, 1280), kernel=(384, 384)) -> dict:
    """Best-of-``repeats`` seconds of one float32 box mean over ``shape`` (MPRNet's widest full-resolution map of a
    1280x720 frame, TLC's 384-px window): ours in cache-sized steps, ours over the whole map at once, TLC's integral
    image."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(device)

    def timed(fn: Callable[[], object]) -> float:
        def run() -> object:
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out

        return _best(run, repeats)[0]

    return {
        "shape": list(shape),
        "kernel": list(kernel),
        "ours": timed(lambda: box_mean(x, kernel)),
        "ours_whole_map": timed(lambda: box_mean(x, kernel, step_bytes=x.numel() * x.element_size())),
        "tlc": timed(lambda: integral_box_mean(x, kernel)),
    }


def _ssim_lines(frame: dict) -> list[str]:
    lines = [
        "SSIM of one 1280x720 pair (best of the repeats, seconds): ours in float64 against scikit-image's "
        "`structural_similarity` (one CPU thread) on the same pair.",
        "",
        "| Variant | Ours (all threads) | Ours (1 thread) | scikit-image | Speed-up (1 thread) | Difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant, r in frame.items():
        one = r.get("seconds_1_thread")
        speedup = r["skimage_seconds"] / (one or r["seconds"])
        lines.append(
            f"| `{variant}` | {r['seconds']:.3f} | {'n/a' if one is None else f'{one:.3f}'} | "
            f"{r['skimage_seconds']:.3f} | {speedup:.2f}x | {r['difference']:.1e} |"
        )
    lines += [
        "",
        "Difference: `gaussian2d` against scikit-image's score, `matlab3d` against scipy's 3-D Gaussian with replicate "
        "borders (tests: within 1e-12 of scikit-image and of NAFNet's `_ssim_3d` in float64 on a 1280x720 pair).",
    ]
    return lines


def _scoring_lines(scoring: dict) -> list[str]:
    lines = [
        "",
        f"Scoring throughput (pairs/s over {scoring['pairs']} 1280x720 pairs; {scoring['cores']} cores; 0 workers = "
        "in the evaluating process):",
        "",
        "| Protocol | " + " | ".join(f"{w} workers" for w in next(iter(scoring["protocols"].values()))) + " | Scores |",
        "|---|" + "---:|" * len(next(iter(scoring["protocols"].values()))) + "---|",
    ]
    for protocol, rates in scoring["protocols"].items():
        base = rates["1"]["pairs_per_s"]
        cells = [f"{r['pairs_per_s']:.2f} ({r['pairs_per_s'] / base:.2f}x)" for r in rates.values()]
        same = "identical" if all(r["identical"] for r in rates.values()) else "DIFFER"
        lines.append(f"| {protocol} | " + " | ".join(cells) + f" | {same} |")
    return lines


def _tlc_lines(tlc: dict) -> list[str]:
    err = tlc["box_mean_error"]
    lines = [
        "",
        f"TLC at {tlc['size'][0]}x{tlc['size'][1]} (median of {tlc['repeats']} forwards after a 64x64 warm-up; on the "
        "CPU each column in a fresh process, whose peak resident set is the memory column): ours against TLC's own "
        "layers (megvii-research/TLC@8e87983 `local_arch.py`, written from its text) on the same converted network; "
        f"output difference of the two at {tlc['check_size'][0]}x{tlc['check_size'][1]}.",
        "",
        "| Model | Plain (ms) | TLC ours (ms) | TLC release (ms) | Ours overhead | Release overhead | Ours / release "
        "| Output difference | Peak MiB plain / ours / release |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in tlc["models"].items():
        lines.append(
            f"| {name} | {r['plain_ms']:,.0f} | {r['ours_ms']:,.0f} | {r['tlc_ms']:,.0f} | "
            f"{100 * (r['ours_ms'] / r['plain_ms'] - 1):+.1f}% | {100 * (r['tlc_ms'] / r['plain_ms'] - 1):+.1f}% | "
            f"{r['ours_ms'] / r['tlc_ms']:.2f} | {r['max_output_difference']:.1e} | "
            f"{r['plain_peak_mib']:,.0f} / {r['ours_peak_mib']:,.0f} / {r['tlc_peak_mib']:,.0f} |"
        )
    lines += [
        "",
        f"Float32 box means of a {err['shape'][2]}x{err['shape'][3]} map with a {err['kernel'][0]}-px window, largest "
        f"error against float64: ours {err['ours']:.1e}, TLC's integral image {err['tlc']:.1e}.",
    ]
    sec = tlc.get("box_mean_seconds")
    if sec:
        c, h, w = sec["shape"][1:]
        lines += [
            "",
            f"One float32 box mean of a {c}x{h}x{w} map with a {sec['kernel'][0]}-px window (best of the repeats): "
            f"ours "
            f"{1000 * sec['ours']:,.0f} ms in cache-sized steps, {1000 * sec['ours_whole_map']:,.0f} ms over the whole "
            f"map at once, TLC's integral image {1000 * sec['tlc']:,.0f} ms ({sec['tlc'] / sec['ours']:.1f}x ours).",
        ]
    return lines


def render_speed_markdown(payload: dict) -> str:
    """``results/bench/speed-<device>.md`` from :func:`bench_ssim_frame`, :func:`bench_scoring`, :func:`bench_tlc`."""
    m = payload["machine"]
    lines = [
        f"# Scoring and TLC speed: {m.get('gpu') or m['cpu']} ({m['device']}, {m['threads']} threads)",
        "",
        *_ssim_lines(payload["ssim"]),
        *(_scoring_lines(payload["scoring"]) if payload.get("scoring") else []),
        *(_tlc_lines(payload["tlc"]) if payload.get("tlc") else []),
        "",
        "Generated by `python -m benchmark.bench speed`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m benchmark.tools.bench_speed <model> <variant> <height> <width> <repeats>: one CPU TLC measurement as
    # JSON on the last line (bench_tlc runs it in a fresh process per variant).
    _name, _variant, _h, _w, _repeats = sys.argv[1:6]
    result = time_variant(_name, _variant, (int(_h), int(_w)), int(_repeats), torch.device("cpu"))
    print(json.dumps(result))
