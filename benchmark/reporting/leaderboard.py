"""The harness's own leaderboard: every registered model with released weights, on each benchmark under its official
protocol (the release's beside it where different), with its cost; ``results/tables/leaderboard.md`` (report stage)
and ``results/figures/leaderboard.png`` (figures stage), both from :func:`leaderboard_entries`.

Reported numbers come from ``results/reported/``: the paper's Tables 1 and 2 (``table1.csv``, ``table2.csv``: the
numbers the MSFS-Net paper gives for each method, its own and quoted) and ``leaderboard.csv`` (methods after the
paper and other published numbers, one row per model, TLC setting, training and test set, each with its source). A
number given twice is an error naming both files. Reproduced numbers are the evaluation records of the authors'
released weights (``<results>/runs/release/<train>/<test>/<model>[-local].json``: ``python -m benchmark.evaluate
model=<name> dataset=<test> checkpoint=release``). Costs are the complexity records (``<results>/complexity/*.json``,
``python -m benchmark.complexity``): parameters, MACs at 1280x720, CPU latency at 256x256 and GPU latency at 1280x720.
Tables 1 and 2 stay the paper's (``benchmark.reporting.paper_tables``); this is the harness's view across papers.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.core.config import RunConfig, model_config
from benchmark.core.layout import Layout
from benchmark.evaluation.records import EvalRecord, read_record
from benchmark.reporting.cells import PSNR_DIGITS
from benchmark.reporting.paper_tables import DATASET_TITLES, OUTPUTS_MARK, SSIM_DIGITS, comparable_ssim
from models import list_models


@dataclass(frozen=True)
class Benchmark:
    """One leaderboard column: weights trained on ``train``, scored on ``test``."""

    train: str
    test: str

    @property
    def title(self) -> str:
        star = "*" if self.train == self.test and self.train != "gopro" else ""
        return DATASET_TITLES.get(self.test, self.test) + star


BENCHMARKS = (
    Benchmark("gopro", "gopro"),
    Benchmark("gopro", "hide"),
    Benchmark("gopro", "realblur_j"),
    Benchmark("gopro", "realblur_r"),
    Benchmark("realblur_j", "realblur_j"),
    Benchmark("realblur_r", "realblur_r"),
)
"""GoPro-trained weights on GoPro, HIDE and RealBlur; RealBlur-trained weights on their own test set (``*``)."""

Key = tuple[str, bool, str, str]
"""(model, tlc, train dataset, test dataset)."""


@dataclass(frozen=True)
class Reported:
    """A published number: PSNR (dB) and SSIM (``None`` where not given), and where it was read."""

    psnr: float | None
    ssim: float | None
    source: str


@dataclass(frozen=True)
class Cell:
    """One model on one benchmark: the reported number and the released weights' record, either may be missing."""

    reported: Reported | None = None
    record: EvalRecord | None = None


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a model and TLC setting, its cells by benchmark and its cost (``None``: not measured);
    ``outputs``: the row of the authors' published result images, scored (its cells' records are those), which
    follows the model's row."""

    model: str
    tlc: bool
    cells: dict[Benchmark, Cell] = field(default_factory=dict)
    outputs: bool = False
    parameters: int | None = None
    macs_720p: int | None = None
    cpu_ms_256: float | None = None
    gpu_ms_720p: float | None = None

    @property
    def name(self) -> str:
        if self.outputs:
            return f"{self.model} · released outputs{OUTPUTS_MARK}"
        return f"{self.model}-Local" if self.tlc else self.model


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def _add(out: dict[Key, Reported], sources: dict[Key, str], key: Key, value: Reported, where: str) -> None:
    if key in out:
        raise ValueError(
            f"{where}: {key[0]}{'-Local' if key[1] else ''} (trained on {key[2]}, tested on {key[3]}) is already "
            f"reported in {sources[key]}; keep one"
        )
    out[key], sources[key] = value, where


def read_reported(folder: Path) -> dict[Key, Reported]:
    """Every reported number in ``results/reported/`` that names a harness model (module docstring).

    Raises:
        ValueError: a number given twice (naming both files), or a ``leaderboard.csv`` row with a bad field.
    """
    out: dict[Key, Reported] = {}
    sources: dict[Key, str] = {}
    for row in _rows(folder / "table1.csv"):
        source = f"MSFS-Net paper Table 1 ({row['citation']})"
        for test in ("gopro", "hide"):
            value = Reported(_number(row[f"{test}_psnr"]), _number(row[f"{test}_ssim"]), source)
            if row["model"] and value.psnr is not None:
                _add(out, sources, (row["model"], row["tlc"] == "true", "gopro", test), value, "table1.csv")
    for row in _rows(folder / "table2.csv"):
        source = f"MSFS-Net paper Table 2 ({row['citation']})"
        for test in ("realblur_r", "realblur_j"):
            train = "gopro" if row["trained_on"] == "gopro" else test
            value = Reported(_number(row[f"{test}_psnr"]), _number(row[f"{test}_ssim"]), source)
            if row["model"] and value.psnr is not None:
                _add(out, sources, (row["model"], row["tlc"] == "true", train, test), value, "table2.csv")
    path = folder / "leaderboard.csv"
    for line, row in enumerate(_rows(path), start=2):
        where = f"leaderboard.csv line {line}"
        if row["tlc"] not in ("true", "false") or not row["source"] or _number(row["psnr"]) is None:
            raise ValueError(f"{path} line {line}: tlc must be true/false, psnr and source must be given: {row}")
        key = (row["model"], row["tlc"] == "true", row["train"], row["test"])
        _add(out, sources, key, Reported(_number(row["psnr"]), _number(row["ssim"]), row["source"]), where)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the reported numbers are missing (results/reported/ is part of the repo)")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def latest_complexity(records: Iterable[dict]) -> dict[str, dict[str, dict]]:
    """Model -> {``cpu``/``cuda`` -> its entry in the newest complexity run of that device}."""
    newest: dict[str, dict] = {}
    for run in records:
        device = run["machine"]["device"]
        if device not in newest or run["created"] > newest[device]["created"]:
            newest[device] = run
    out: dict[str, dict[str, dict]] = {}
    for device, run in newest.items():
        for rec in run["models"]:
            out.setdefault(rec["model"], {})[device] = rec
    return out


def _release_record(layout: Layout, model: str, tlc: bool, bench: Benchmark) -> EvalRecord | None:
    path = layout.record(bench.train, bench.test, model, tlc, release=True)
    if not path.is_file():
        return None
    record = read_record(path)
    return record if record.applicable and record.train_dataset == bench.train else None


def _outputs_record(layout: Layout, model: str, bench: Benchmark) -> EvalRecord | None:
    path = layout.record(bench.train, bench.test, model, False, outputs="released")
    return read_record(path) if path.is_file() else None


def leaderboard_entries(
    layout: Layout, models: Iterable[str], reported: dict[Key, Reported], complexity: Iterable[dict]
) -> list[Entry]:
    """One entry per model of ``models`` (those with released weights) and TLC setting: the plain row always, the
    TLC row where a number is reported or a release record exists for it. Sorted by GoPro PSNR (reproduced, else
    reported), best first; rows without a GoPro number last, by name. A model whose published result images were
    scored gets an ``outputs`` row right after its plain row (the same reported numbers, their images' scores)."""
    entries = sorted(_weights_entries(layout, models, reported, complexity), key=_rank)
    out = []
    for entry in entries:
        out.append(entry)
        cells = {b: Cell(entry.cells[b].reported, _outputs_record(layout, entry.model, b)) for b in BENCHMARKS}
        if not entry.tlc and any(c.record for c in cells.values()):
            out.append(dataclasses.replace(entry, cells=cells, outputs=True))
    return out


def _weights_entries(
    layout: Layout, models: Iterable[str], reported: dict[Key, Reported], complexity: Iterable[dict]
) -> list[Entry]:
    costs = latest_complexity(complexity)
    entries = []
    for model in models:
        for tlc in (False, True):
            cells = {
                b: Cell(reported.get((model, tlc, b.train, b.test)), _release_record(layout, model, tlc, b))
                for b in BENCHMARKS
            }
            if tlc and not any(c.reported or c.record for c in cells.values()):
                continue
            cost = costs.get(model, {})
            any_cost = cost.get("cpu") or cost.get("cuda") or {}
            entries.append(
                Entry(
                    model=model,
                    tlc=tlc,
                    cells=cells,
                    parameters=any_cost.get("parameters"),
                    macs_720p=any_cost.get("macs_720p"),
                    cpu_ms_256=cost.get("cpu", {}).get("latency_ms"),
                    gpu_ms_720p=cost.get("cuda", {}).get("latency_ms"),
                )
            )
    return entries


def gopro_psnr(entry: Entry) -> tuple[float | None, bool]:
    """The entry's GoPro PSNR for ranking and plotting: (value, reproduced?), the reproduced one first."""
    cell = entry.cells.get(BENCHMARKS[0], Cell())
    if cell.record is not None:
        return cell.record.means["psnr"], True
    return (cell.reported.psnr if cell.reported else None), False


def _rank(entry: Entry) -> tuple[int, float, str]:
    value, _ = gopro_psnr(entry)
    return (0, -value, entry.name) if value is not None else (1, 0.0, entry.name)


def _score(record: EvalRecord, digits_psnr: int = PSNR_DIGITS) -> str:
    ssim = record.means.get(comparable_ssim(record.protocol))
    text = f"{record.means['psnr']:.{digits_psnr}f}"
    return text + (f" / {ssim:.{SSIM_DIGITS}f}" if ssim is not None else "")


def _cell_text(cell: Cell) -> str:
    """``reproduced · reported``: the release weights' PSNR / SSIM under the official protocol (the release
    protocol's in brackets, marked ``ʳᵖ``, where the release declares its own), then the reported numbers; ``–`` for a
    missing side, one ``–`` when both are."""
    if cell.record is None and cell.reported is None:
        return "–"
    repro = "–"
    if cell.record is not None:
        repro = _score(cell.record)
        under = cell.record.under("release")
        if under is not None:
            repro += f" (ʳᵖ {_score(under)})"
    rep = "–"
    if cell.reported is not None:
        rep = f"{cell.reported.psnr:.{PSNR_DIGITS}f}"
        if cell.reported.ssim is not None:
            rep += f" / {cell.reported.ssim:.{SSIM_DIGITS}f}"
    return f"{repro} · {rep}"


def _outputs_notes(entries: list[Entry]) -> list[str]:
    """Where each scored folder of result images came from (and which images it lacked)."""
    return [
        f"{e.model} on {b.title}: {c.record.outputs.describe()}"
        for e in entries
        if e.outputs
        for b, c in e.cells.items()
        if c.record is not None and c.record.outputs is not None
    ]


def _cost(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "–"


def render_leaderboard(entries: list[Entry]) -> str:
    """Markdown for ``results/tables/leaderboard.md``; benchmark columns with no number in any row are left out."""
    used = [b for b in BENCHMARKS if any(e.cells[b].record or e.cells[b].reported for e in entries)]
    header = ["Model", *[b.title for b in used], "Parameters", "GMACs 1280x720", "CPU ms 256x256", "GPU ms 1280x720"]
    lines = [
        "# Leaderboard: released weights on one protocol",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "|".join([":---:"] * len(used)) + "|---:|---:|---:|---:|",
    ]
    sources: dict[str, list[str]] = {}
    for e in entries:
        cells = [_cell_text(e.cells[b]) for b in used]
        for b in used:
            rep = e.cells[b].reported
            if rep is not None:
                sources.setdefault(rep.source, []).append(f"{e.name} {b.title}")
        costs = [
            _cost(e.parameters, ",d"),
            _cost(e.macs_720p / 1e9 if e.macs_720p is not None else None, ",.1f"),
            _cost(e.cpu_ms_256, ",.0f"),
            _cost(e.gpu_ms_720p, ",.1f"),
        ]
        lines.append(f"| {e.name} | " + " | ".join(cells + costs) + " |")
    lines += [
        "",
        "Cells: reproduced · reported, each PSNR (dB) / SSIM. Reproduced: the authors' released weights run by the "
        "harness (`python -m benchmark.evaluate model=<name> dataset=<test> checkpoint=release [train_dataset=...] "
        "tlc=[false,true]`) under the test set's official protocol (SSIM: MATLAB's 3-D `matlab3d` where the protocol "
        "scores it, as the papers' GoPro/HIDE numbers; RealBlur: its official masked SSIM after ECC alignment); "
        "`(ʳᵖ ...)`: the same outputs under the protocol of the model's own release, where it declares one. –: no "
        "run yet, or not reported. `*`: trained and tested on that RealBlur set; the other columns use the GoPro-"
        "trained weights. Rows are sorted by GoPro PSNR (reproduced where run, else reported). Costs: the newest "
        "`python -m benchmark.complexity` record of each device (`results/complexity/`); – where not measured. "
        f"`· released outputs{OUTPUTS_MARK}` rows: the authors' own published result images scored the same way "
        "(`python -m benchmark.evaluate model=<name> dataset=<test> outputs=<folder>`: 8-bit files, not rounded "
        "again, no model run), under the row of their weights run by the harness: a gap between the two rows is the "
        "weights or the inference, not the scoring.",
        *[f"- {OUTPUTS_MARK} {note}." for note in _outputs_notes(entries)],
        "",
        "Reported numbers (`results/reported/`):",
        *[f"- {source}: {', '.join(where)}." for source, where in sorted(sources.items())],
        "",
        "Generated by `python -m benchmark.report`; do not edit by hand.",
        "",
    ]
    return "\n".join(lines)


def leaderboard_figure(path: Path, entries: list[Entry]) -> int:
    """``results/figures/leaderboard.png``: GoPro PSNR against GMACs at 1280x720 (log scale), one point per model
    and TLC setting that has both, reproduced (filled) and reported (hollow) marked differently, joined where both
    exist. Returns the number of rows plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.reporting.plotting import save_figure

    fig, ax = plt.subplots(figsize=(8, 5.5))
    plotted = 0
    for e in entries:
        cell = e.cells[BENCHMARKS[0]]
        if e.outputs or e.macs_720p is None or (cell.record is None and cell.reported is None):
            continue  # an outputs row would sit on its weights row's point
        x = e.macs_720p / 1e9
        marker = "s" if e.tlc else "o"
        points = []
        if cell.reported is not None:
            ax.scatter([x], [cell.reported.psnr], marker=marker, facecolors="none", edgecolors="tab:gray", s=50)
            points.append(cell.reported.psnr)
        if cell.record is not None:
            ax.scatter([x], [cell.record.means["psnr"]], marker=marker, color="tab:blue", s=50)
            points.append(cell.record.means["psnr"])
        if len(points) == 2:
            ax.plot([x, x], points, color="tab:gray", linewidth=0.8)
        ax.annotate(e.name, (x, max(points)), textcoords="offset points", xytext=(4, 3), fontsize=7)
        plotted += 1
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per 1280x720 frame (log scale)")
    ax.set_ylabel("GoPro PSNR (dB)")
    ax.set_title("Released models on GoPro: reproduced (filled) and reported (hollow); squares: TLC")
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path)
    return plotted


def pipeline_leaderboard(run: RunConfig) -> list[Entry]:
    """The entries of ``run``'s results: every registered model whose conf declares released weights."""
    released = [name for name in list_models() if model_config(run, name).release is not None]
    layout = run.layout
    return leaderboard_entries(layout, released, read_reported(layout.reported), read_complexity(layout.complexity))


def read_complexity(folder: Path) -> list[dict]:
    """The complexity records in ``<results>/complexity/`` (none yet: an empty list)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
