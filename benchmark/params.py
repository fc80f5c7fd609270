"""``python -m benchmark.params [overrides...]``: write params.yaml composed from ``conf/``, as ``dvc exp run`` does.

Run it after editing ``conf/`` (``benchmark.tools.params``); a test fails while the committed params.yaml is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmark.core.layout import project_root
from benchmark.tools.params import compose_params


def main(argv: Sequence[str] | None = None) -> int:
    out = project_root() / "params.yaml"
    compose_params(out, sys.argv[1:] if argv is None else argv)
    print(f"[params] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
