"""``python -m benchmark.bench [models|protocols|speed|all] ...``: speed and memory here (``benchmark.tools.bench``).

Writes ``<results>/bench/<device>.{json,md}``, ``<results>/bench/protocols-<cpu>.json`` and
``<results>/bench/speed-<device>.{json,md}`` (scoring and TLC: ``benchmark.tools.bench_speed``) under ``paths.results``
of ``conf/``; the targets of the README are read off these files, never off timed tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core.cli import errors_exit
from benchmark.core.config import load_config
from benchmark.core.layout import Layout
from benchmark.tools.bench import (
    TRAIN_MODES,
    bench_models,
    bench_protocols_to,
    bench_speed_to,
    cpu_models,
    gpu_models,
)
from models import list_models


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="all", choices=("all", "models", "protocols", "speed"))
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
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: paths.results)")
    parser.add_argument(
        "--tlc-models",
        nargs="*",
        default=["nafnet_w32", "msfsnet", "hinet", "mprnet"],
        help="models whose TLC latency and memory `speed` measures at --latency-size (full size by default)",
    )
    parser.add_argument("--score-pairs", type=int, default=8, help="1280x720 pairs in the scoring-throughput set")
    parser.add_argument(
        "--tlc-repeats",
        type=int,
        default=None,
        help="timed forwards per TLC variant (default: --repeats on CUDA, 1 on the CPU, where MPRNet's takes minutes)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    cuda = torch.cuda.is_available()
    names = args.models or list(gpu_models() if cuda else cpu_models())
    mode_models = args.mode_models if args.mode_models is not None else ["msfsnet" if cuda else "msfsnet_tiny"]
    unknown = sorted((set(names) | set(mode_models)) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}")
    with errors_exit():
        paths = load_config().paths
    if args.results is not None:
        paths = dataclasses.replace(paths, results=str(args.results.resolve()))
    layout = Layout(paths)
    if args.command in ("all", "models"):
        paths = bench_models(
            layout,
            names=names,
            mode_models=mode_models,
            modes=args.modes or (list(TRAIN_MODES) if cuda else ["fp32", "bf16", "bf16_cl"]),
            size=args.size,
            batch=args.batch,
            latency_size=tuple(args.latency_size),
            repeats=args.repeats,
            peak_tflops=args.peak_tflops,
            workers=args.workers if args.workers is not None else (8 if cuda else 2),
            loader_pairs=args.loader_pairs,
        )
        print(f"[bench] wrote {paths[0]} and {paths[1]}")
    if args.command in ("all", "protocols"):
        print(f"[bench] wrote {bench_protocols_to(layout, args.repeats)}")
    if args.command in ("all", "speed"):
        written = bench_speed_to(
            layout,
            tlc_models=args.tlc_models,
            size=tuple(args.latency_size),
            repeats=args.repeats,
            tlc_repeats=args.tlc_repeats or (args.repeats if cuda else 1),
            pairs=args.score_pairs,
        )
        print(f"[bench] wrote {written[0]} and {written[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
