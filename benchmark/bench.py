"""Benchmarks: ``python -m benchmark.bench protocols [--repeats N]``.

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

import torch
import torch.nn.functional as F

from benchmark import io
from benchmark.complexity import _cpu_name
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    proto = sub.add_parser("protocols", help="time scoring one 1280x720 pair under each dataset protocol")
    proto.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    results = bench_protocols(args.repeats)
    payload = {
        "machine": {
            "cpu": _cpu_name(),
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


if __name__ == "__main__":
    sys.exit(main())
