"""The MSFS-Net paper's Tables 1-3, reproduced beside the reported numbers: ``results/tables/table{1,2,3}.md``.

Rows come from ``results/reported/table*.csv`` (the paper's numbers, typed from its text, in its order). A row whose
method the harness implements (``model`` column) gets its reproduced value from the per-image results of an evaluation
run, found in this order:

1. ``results/runs/<train set>/<test set>/<model>[-local].{json,csv}``: weights trained by this pipeline;
2. ``results/runs/release/<test set>/<model>[-local].{json,csv}``: the authors' released weights
   (``checkpoint=release``), marked ``ʳ``, used when their ``trained_on`` is the row's training set.

Each reproduced cell shows the mean, its bootstrap 95% interval over the test images, the reported value and the
difference; ``⚠`` flags a reported value outside the interval. A last column per test set gives the paired
sign-flip test of the row's per-image PSNR against MSFS-Net's (same images). Methods the harness does not run show the
reported value only. SSIM is compared in the variant the table's numbers used: ``matlab3d`` for GoPro/HIDE (MATLAB's
``ssim`` of MPRNet's evaluation script and the MSFS-Net release's ``psnr_ssim.m``), the official masked SSIM for
RealBlur.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.stats import bootstrap_ci, paired_test

DATASET_TITLES = {
    "gopro": "GoPro",
    "hide": "HIDE",
    "realblur_r": "RealBlur-R",
    "realblur_j": "RealBlur-J",
    "synthblur": "synthblur",
}
REFERENCE_MODEL = "msfsnet"


@dataclass(frozen=True)
class Run:
    """One evaluation's record and per-image scores, and where it came from (``pipeline`` or ``release``)."""

    record: dict
    per_image: pd.DataFrame
    source: str

    def values(self, metric: str) -> np.ndarray:
        return self.per_image[metric].to_numpy(dtype=np.float64)


def find_run(results: Path, model: str, tlc: bool, train: str, test: str) -> Run | None:
    """The evaluation of ``model`` (TLC or not) trained on ``train`` and scored on ``test``, or None."""
    stem = f"{model}-local" if tlc else model
    for source, folder in (
        ("pipeline", results / "runs" / train / test),
        ("release", results / "runs" / "release" / test),
    ):
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
        if not (json_path.is_file() and csv_path.is_file()):
            continue
        record = json.loads(json_path.read_text())
        if not record.get("applicable", True) or record.get("train_dataset") != train:
            continue
        return Run(record, pd.read_csv(csv_path), source)
    return None


def ssim_metric(run: Run) -> str:
    """The per-image SSIM column comparable with the paper: ``ssim_matlab3d`` where recorded, else ``ssim``."""
    return "ssim_matlab3d" if "ssim_matlab3d" in run.per_image.columns else "ssim"


def format_cell(values: np.ndarray | None, reported: float | None, *, digits: int) -> str:
    """``mean [low, high] · reported (±diff)``; ``⚠`` when the interval excludes the reported value (taken as the
    interval of numbers that round to it)."""
    rep = f"{reported:.{digits}f}" if reported is not None and not np.isnan(reported) else None
    if values is None:
        return rep or "–"
    mean = float(values.mean())
    low, high = bootstrap_ci(values)
    text = f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    if rep is None:
        return text
    # The paper rounds to ``digits`` decimals: flag only when the interval misses the whole rounding interval.
    half = 0.5 * 10.0**-digits
    flag = " ⚠" if high < float(reported) - half or low > float(reported) + half else ""
    return f"{text} · {rep} ({mean - float(reported):+.{digits}f}){flag}"


def format_p(values: np.ndarray | None, reference: np.ndarray | None, is_reference: bool) -> str:
    if is_reference:
        return "(reference)"
    if values is None or reference is None or values.shape != reference.shape:
        return "–"
    return f"{paired_test(values, reference):.3g}"


def render(
    title: str,
    rows: pd.DataFrame,
    *,
    results: Path,
    tests: list[str],
    train_for_row,
    label_for_row,
    protocol_notes: list[str],
) -> str:
    """A Markdown table: one row per reported row, per test set PSNR, SSIM and the paired p-value vs MSFS-Net."""
    header = ["Method"]
    for t in tests:
        name = DATASET_TITLES.get(t, t)
        header += [f"{name} PSNR", f"{name} SSIM", f"{name} p (PSNR vs MSFS-Net)"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for _, row in rows.iterrows():
        model = row.get("model") if isinstance(row.get("model"), str) else None
        tlc = str(row.get("tlc", "false")).lower() == "true"
        cells = [label_for_row(row)]
        marks = set()
        for t in tests:
            train = train_for_row(row, t)
            run = find_run(results, model, tlc, train, t) if model else None
            reference = find_run(results, REFERENCE_MODEL, tlc, train, t)
            if run is not None and run.source == "release":
                marks.add("ʳ")
            psnr_values = run.values("psnr") if run is not None else None
            ssim_values = run.values(ssim_metric(run)) if run is not None else None
            cells.append(format_cell(psnr_values, _reported(row, t, "psnr"), digits=2))
            cells.append(format_cell(ssim_values, _reported(row, t, "ssim"), digits=3))
            cells.append(
                format_p(psnr_values, reference.values("psnr") if reference else None, model == REFERENCE_MODEL)
            )
        cells[0] += "".join(sorted(marks))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: reproduced mean [bootstrap 95% interval over the test images] · reported (reproduced − reported); ⚠: "
        "the interval excludes the reported value; a reported value alone: the harness has no run for it (yet). "
        "p: paired sign-flip test of the per-image PSNR against MSFS-Net's on the same images (same TLC setting). "
        "ʳ: the authors' released weights (`checkpoint=release`); otherwise weights trained by this pipeline.",
        "",
        "Protocol:",
        *[f"- {note}" for note in protocol_notes],
        "",
        "Reported numbers: `results/reported/` (typed from the paper). Generated by `python -m benchmark.report`; "
        "do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


def _reported(row: pd.Series, test: str, metric: str) -> float | None:
    value = row.get(f"{test}_{metric}")
    return None if value is None or pd.isna(value) else float(value)


def _protocols(results: Path, tests: list[str]) -> list[str]:
    """The protocol text of each test set, from any recorded evaluation on it (else a pointer to its config)."""
    notes = []
    for t in tests:
        texts = sorted({json.loads(p.read_text()).get("protocol_text", "") for p in results.glob(f"runs/*/{t}/*.json")})
        texts = [x for x in texts if x]
        what = texts[0] if texts else f"see conf/dataset/{t}.yaml (no evaluation recorded yet)"
        ssim_note = (
            "; SSIM compared: `matlab3d` (MATLAB's ssim, as the reported numbers)" if t in ("gopro", "hide") else ""
        )
        notes.append(f"{DATASET_TITLES.get(t, t)}: {what}{ssim_note}.")
    notes.append("`-Local` rows: TLC (Chu et al. 2022), exact local box means, window 1.5 x the training crop.")
    return notes


def render_paper_tables(results: Path, reported: Path) -> dict[str, str]:
    """``{"table1.md": ..., "table2.md": ..., "table3.md": ...}`` from ``reported`` CSVs and ``results`` runs."""
    t1 = pd.read_csv(reported / "table1.csv", dtype={"model": str})
    t2 = pd.read_csv(reported / "table2.csv", dtype={"model": str})
    t3 = pd.read_csv(reported / "table3.csv", dtype={"model": str})

    def check(frame: pd.DataFrame) -> pd.Series:
        return frame.apply(lambda r: "✓" if r else "×")

    t3_label = t3.assign(
        label=lambda f: (
            "FSM "
            + check(f["fsm"])
            + " · CSFFM "
            + check(f["csffm"])
            + " · CLM "
            + check(f["clm"])
            + " · Consistency "
            + check(f["consistency"])
        )
    )
    return {
        "table1.md": render(
            "Table 1: GoPro and HIDE (models trained on GoPro)",
            t1,
            results=results,
            tests=["gopro", "hide"],
            train_for_row=lambda row, test: "gopro",
            label_for_row=lambda row: (
                f"{row['method']} ({row['citation']})"
                if row["citation"] != "this paper" and not row["method"].startswith("(")
                else row["method"]
            ),
            protocol_notes=_protocols(results, ["gopro", "hide"]),
        ),
        "table2.md": render(
            "Table 2: RealBlur-R and RealBlur-J (GoPro-trained; `*` rows trained on RealBlur)",
            t2,
            results=results,
            tests=["realblur_r", "realblur_j"],
            # `*` rows: trained and tested on each RealBlur variant's own split.
            train_for_row=lambda row, test: test if row["trained_on"] == "realblur" else "gopro",
            label_for_row=lambda row: row["method"],
            protocol_notes=_protocols(results, ["realblur_r", "realblur_j"]),
        ),
        "table3.md": render(
            "Table 3: MSFS-Net ablations on GoPro",
            t3_label.assign(method=t3_label["label"], tlc=False),
            results=results,
            tests=["gopro"],
            train_for_row=lambda row, test: "gopro",
            label_for_row=lambda row: f"{row['label']} (`{row['model']}`)",
            protocol_notes=_protocols(results, ["gopro"]),
        ),
    }
