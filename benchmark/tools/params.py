"""params.yaml composed from ``conf/`` exactly as ``dvc exp run`` composes it (``python -m benchmark.params``).

Uses DVC's own composition function, so the committed params.yaml is byte-identical to what ``dvc exp run`` writes;
tests/test_config.py fails when the two drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmark.core.layout import CONF_DIR


def compose_params(output: Path, overrides: Sequence[str] = ()) -> None:
    """Compose ``conf/config.yaml`` with ``overrides`` into ``output`` exactly as ``dvc exp run`` does."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(CONF_DIR), None, "config", str(CONF_DIR.parent), list(overrides))
