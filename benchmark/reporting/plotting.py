"""Writing matplotlib figures: one place, atomic, so an interrupted stage never leaves half a PNG."""

from __future__ import annotations

from pathlib import Path

from benchmark.core import atomic


def save_figure(fig: object, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically, then release it."""
    import matplotlib.pyplot as plt

    try:
        atomic.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))  # type: ignore[attr-defined]
    finally:
        plt.close(fig)  # type: ignore[arg-type]
