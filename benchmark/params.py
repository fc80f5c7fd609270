"""``python -m benchmark.params [overrides...]``: write params.yaml composed from conf/, as `dvc exp run` does.

Uses DVC's own composition function, so the committed params.yaml is byte-identical to what `dvc exp run` writes;
tests/test_config.py fails when the two drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.config import CONF_DIR


def compose_params(output: Path, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Compose ``conf/config.yaml`` with ``overrides`` into ``output`` exactly as `dvc exp run` does."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(CONF_DIR), None, "config", str(CONF_DIR.parent), list(overrides))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out = CONF_DIR.parent / "params.yaml"
    compose_params(out, args)
    print(f"[params] wrote {out}")


if __name__ == "__main__":
    main()
