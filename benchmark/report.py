"""Report: ``python -m benchmark.report`` renders ``results/tables/<train dataset>.md`` from evaluation results.

Rows are models (``<model>-Local`` rows for TLC), columns are test datasets x (PSNR, SSIM, and a further SSIM column
per extra variant of the dataset's protocol), PSNR with 2 and SSIM with 4 decimals, the protocol of each dataset under
the table. Which results exist is read from the pipeline lists of the config (``pipeline.models`` x
``pipeline.train_datasets`` x ``pipeline.datasets``, plain and TLC), never by globbing, so a model removed from the
pipeline leaves no stale row. Every number comes from a JSON written by ``benchmark.evaluate``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig

from benchmark import io
from benchmark.complexity import render_table as render_complexity
from benchmark.config import ConfigError, apply_params_file, project_root
from benchmark.paper_tables import render_paper_tables
from benchmark.stats import bootstrap_ci, paired_test
from benchmark.tracking import start_run

IDENTITY = "identity"


@dataclass(frozen=True)
class Record:
    """One evaluation result as ``benchmark.evaluate`` wrote it."""

    row: str
    model: str
    tlc: bool
    train_dataset: str
    dataset: str
    psnr: float
    ssim: float
    n_images: int
    protocol_text: str
    tlc_window: str | None
    extra_ssim: tuple[tuple[str, float], ...] = ()
    psnr_values: tuple[float, ...] = ()
    ssim_values: tuple[float, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        window = None
        if data.get("tlc"):
            window = f"{data['tlc_base_ratio']} x training size {data['tlc_train_size']}"
        return cls(
            data["row"],
            data["model"],
            bool(data["tlc"]),
            data["train_dataset"],
            data["dataset"],
            float(data["psnr"]),
            float(data["ssim"]),
            int(data["n_images"]),
            data["protocol_text"],
            window,
            tuple((k.removeprefix("ssim_"), float(v)) for k, v in data.items() if k.startswith("ssim_")),
        )


def load_records(
    results: Path,
    models: Sequence[str],
    train_datasets: Sequence[str],
    tlc: Sequence[bool],
    test_datasets: Sequence[str] | None = None,
) -> list[Record]:
    """The records of the pipeline's combinations (each model trained on each train dataset, scored on each test
    dataset; test datasets default to the train dataset itself); a missing file is an error naming it and the stage."""
    records = []
    for train_ds in train_datasets:
        for test_ds in test_datasets or [train_ds]:
            for model in models:
                for local in tlc:
                    path = results / "runs" / train_ds / test_ds / (f"{model}-local.json" if local else f"{model}.json")
                    if not path.is_file():
                        raise FileNotFoundError(
                            f"{path} is missing: run `dvc repro evaluate@{model}-{train_ds}-{test_ds}`"
                        )
                    try:
                        data = json.loads(path.read_text())
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path} is not valid JSON ({err}); run its evaluate stage again") from err
                    if data.get("applicable", True):
                        record = Record.from_json(data)
                        per_image = path.with_suffix(".csv")
                        if per_image.is_file():  # per-image scores give the intervals and paired tests
                            frame = pd.read_csv(per_image)
                            record = dataclasses.replace(
                                record,
                                psnr_values=tuple(frame["psnr"].astype(float)),
                                ssim_values=tuple(frame["ssim"].astype(float)),
                            )
                        records.append(record)
    return records


def render_table(records: Sequence[Record], *, title: str) -> str:
    """A Markdown table: rows = records' ``row`` (order of first appearance), columns = datasets x (PSNR, SSIM).

    When an ``identity`` row is present, a column per dataset gives each row's PSNR gain over it.
    """
    datasets = list(dict.fromkeys(r.dataset for r in records))
    rows = list(dict.fromkeys(r.row for r in records))
    cell = {(r.row, r.dataset): r for r in records}
    floor = {d: cell[(IDENTITY, d)].psnr for d in datasets if (IDENTITY, d) in cell}
    extras = {d: [v for v, _ in next(r for r in records if r.dataset == d).extra_ssim] for d in datasets}
    # The paired test's reference: the table's MSFS-Net (plain) row, when per-image scores were recorded.
    reference = next((r.row for r in records if r.model.startswith("msfsnet") and not r.tlc and r.psnr_values), None)
    header = ["Model"]
    for d in datasets:
        header += [f"{d} PSNR", f"{d} SSIM"] + [f"{d} SSIM ({v})" for v in extras[d]]
        header += [f"{d} ΔPSNR vs identity"] if d in floor else []
        header += [f"{d} p (PSNR vs {reference})"] if reference else []
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in rows:
        cells = [row]
        for d in datasets:
            r = cell.get((row, d))
            cells += [_with_ci(r.psnr, r.psnr_values, 2), _with_ci(r.ssim, r.ssim_values, 4)] if r else ["–", "–"]
            extra = dict(r.extra_ssim) if r else {}
            cells += [f"{extra[v]:.4f}" if v in extra else "–" for v in extras[d]]
            if d in floor:
                cells.append(f"{r.psnr - floor[d]:+.2f}" if r else "–")
            if reference:
                ref = cell.get((reference, d))
                if row == reference:
                    cells.append("(reference)")
                elif r and ref and len(r.psnr_values) == len(ref.psnr_values) > 0:
                    cells.append(f"{paired_test(r.psnr_values, ref.psnr_values):.3g}")
                else:
                    cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Protocol:"]
    for d in datasets:
        first = next(r for r in records if r.dataset == d)
        lines.append(f"- {d} ({first.n_images} test images): {first.protocol_text}.")
    if any(r.psnr_values for r in records):
        lines.append(
            "- Brackets: bootstrap 95% interval of the mean over the test images; p: paired sign-flip test of the "
            "per-image PSNR against the reference row on the same images (`benchmark.stats`)."
        )
    windows = sorted({r.tlc_window for r in records if r.tlc_window})
    if windows:
        lines.append(f"- `-Local` rows: TLC (Chu et al. 2022), exact local box means, window {', '.join(windows)}.")
    lines += ["", "Generated by `python -m benchmark.report` from `results/runs/`; do not edit by hand.", ""]
    return "\n".join(lines)


def _with_ci(mean: float, values: tuple[float, ...], digits: int) -> str:
    if not values:
        return f"{mean:.{digits}f}"
    low, high = bootstrap_ci(values)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def run_report(cfg: DictConfig) -> list[Path]:
    results = Path(cfg.paths.results)
    written = []
    recipe = (
        f"profile `{cfg.train.profile}`" if cfg.get("recipe", "common") == "common" else "each model's published recipe"
    )
    for train_ds in cfg.pipeline.train_datasets:
        records = load_records(results, list(cfg.pipeline.models), [train_ds], (False, True), cfg.pipeline.datasets)
        text = render_table(records, title=f"Models trained on {train_ds} ({recipe})")
        path = results / "tables" / f"{train_ds}.md"
        io.write_text(path, text)
        written.append(path)
    # The paper's tables: every reported number, with the reproduced one beside it where a run exists.
    for name, text in render_paper_tables(results, project_root() / "results" / "reported").items():
        path = results / "tables" / name
        io.write_text(path, text)
        written.append(path)
    # The complexity table is measured by `python -m benchmark.complexity` (minutes; not a stage) and re-rendered
    # here from its JSON records, because this stage owns results/tables/.
    measured = sorted((results / "complexity").glob("*.json"))
    if measured:
        path = results / "tables" / "complexity.md"
        io.write_text(path, render_complexity([json.loads(p.read_text()) for p in measured]))
        written.append(path)
    with start_run(
        enabled=bool(cfg.tracking.enabled),
        experiment=cfg.tracking.experiment,
        run_name="report",
        tags={"kind": "report", "profile": cfg.train.profile},
        uri=cfg.tracking.uri,
    ) as run:
        for path in written:
            run.log_artifact(path, "tables")
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        written = run_report(apply_params_file(cfg))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(f"[report] {path}")


if __name__ == "__main__":
    main()
