"""Training curves as DVC plot files: ``loss.csv`` (step, total, one column per loss term), ``lr.csv`` (step, lr) and
``val.csv`` (step, psnr) under ``Layout.train_curves(model, dataset)``; ``dvc.yaml`` declares them as the train
stage's plots, so ``dvc plots show`` draws them and ``dvc plots diff <exp>`` overlays two experiments' curves.

They are written whenever ``last.pt`` is (and at the end), so the curves on disk always end at the checkpoint a killed
run resumes from; a resumed run drops any row after its resume step and goes on appending. MLflow keeps its own copy
of the same values (``benchmark.training.loop``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.core import atomic

FILES = ("loss", "lr", "val")
"""The curve files of a run (``<name>.csv``)."""


@dataclass
class TrainingCurves:
    """The rows of a run's three curves, kept in memory and written atomically by :meth:`write`."""

    folder: Path
    loss: list[dict[str, float]] = field(default_factory=list)
    lr: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def resume(cls, folder: Path, step: int) -> TrainingCurves:
        """The curves of a run resumed at ``step`` (``0``: a fresh start): the rows on disk up to that step."""
        curves = cls(Path(folder))
        if step > 0:
            for name in FILES:
                rows = [r for r in _read(curves.folder / f"{name}.csv") if r["step"] <= step]
                setattr(curves, name, rows)
        return curves

    def add_loss(self, step: int, terms: Mapping[str, float], lr: float) -> None:
        """The step's loss terms (``total`` first) and learning rate."""
        self.loss.append({"step": step, "total": float(terms["total"])} | {k: float(v) for k, v in terms.items()})
        self.lr.append({"step": step, "lr": float(lr)})

    def add_val(self, step: int, psnr: float) -> None:
        self.val.append({"step": step, "psnr": float(psnr)})

    def write(self) -> None:
        """Write the three files (each atomically); a file with no rows yet keeps its header, so DVC finds it."""
        headers = {"loss": _columns(self.loss, ["step", "total"]), "lr": ["step", "lr"], "val": ["step", "psnr"]}
        for name in FILES:
            atomic.write_text(self.folder / f"{name}.csv", _csv(headers[name], getattr(self, name)))


def _columns(rows: list[dict[str, float]], first: list[str]) -> list[str]:
    """``first``, then every other key of ``rows`` in the order it first appears."""
    out = list(first)
    for row in rows:
        out.extend(k for k in row if k not in out)
    return out


def _csv(header: list[str], rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: int(v) if k == "step" else f"{v:.6g}" for k, v in row.items()})
    return buf.getvalue()


def _read(path: Path) -> list[dict[str, float]]:
    """The rows of a curve file (empty when there is none: a run killed before its first checkpoint)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
