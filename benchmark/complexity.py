"""``python -m benchmark.complexity [--models NAME ...] [--repeats N] [--no-latency]``: parameters, MACs, latency.

Measures (``benchmark.tools.complexity``) and writes ``<results>/complexity/<device>.json`` and the table
``<results>/tables/complexity.md``, which the report stage re-renders.
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
from benchmark.tools.complexity import measure
from models import list_models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.complexity", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="registered names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per model (median reported)")
    parser.add_argument("--no-latency", action="store_true", help="count parameters and MACs only")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: paths.results)")
    args = parser.parse_args(argv)
    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered: {', '.join(list_models())}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    with errors_exit():
        paths = load_config().paths
    if args.results is not None:
        paths = dataclasses.replace(paths, results=str(args.results.resolve()))
    json_path, table_path = measure(
        names, layout=Layout(paths), repeats=args.repeats, latency=not args.no_latency, device=device
    )
    print(f"[complexity] wrote {json_path} and {table_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
