"""``python -m benchmark.configure [--params params.yaml]``: the configure stage (``benchmark.tools.configure``).

Builds and checks every stage's configuration from params.yaml and ``conf/`` before any work, and writes each stage's
inputs to ``stages/<stage>.json`` (the file each stage of ``dvc.yaml`` depends on).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.core.cli import errors_exit
from benchmark.tools.configure import configure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.configure", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file (params.yaml)")
    args = parser.parse_args(argv)
    with errors_exit():
        written = configure(args.params)
    print(f"[configure] {len(written)} stages checked; inputs in {written[0].parent if written else 'stages/'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
