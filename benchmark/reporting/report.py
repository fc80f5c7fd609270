"""The report stage: every table from the records, ``<results>/tables/``, and one MLflow run holding them."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.core import atomic
from benchmark.core.config import RunConfig, dataset_config
from benchmark.core.tracking import start_run
from benchmark.reporting.complexity_table import render_complexity_table
from benchmark.reporting.leaderboard import pipeline_leaderboard, render_leaderboard
from benchmark.reporting.paper_tables import render_paper_tables
from benchmark.reporting.per_image import write_per_image_plots
from benchmark.reporting.tables import load_pipeline_records, render_results_table


def run_report(run: RunConfig) -> list[Path]:
    """Render the pipeline's tables (one per training set), the paper's Tables 1-3, the leaderboard and the
    complexity table; returns the written paths."""
    layout = run.layout
    written = []
    recipe = f"profile `{run.train.profile}`" if run.recipe == "common" else "each model's published recipe"
    pipeline_records = []
    for train in run.pipeline.train_datasets:
        records = load_pipeline_records(layout, run.pipeline.models, train, run.pipeline.datasets)
        path = layout.tables / f"{train}.md"
        atomic.write_text(path, render_results_table(records, title=f"Models trained on {train} ({recipe})"))
        written.append(path)
        pipeline_records.extend(records)
    # DVC plots (dvc.yaml: the report stage's plots): each row's per-image PSNR beside the identity row's.
    write_per_image_plots(layout, pipeline_records)
    # The paper's tables: every reported number, with the reproduced one beside it where a record exists.
    for name, text in render_paper_tables(layout, lambda test: dataset_config(run, test).protocol).items():
        atomic.write_text(layout.tables / name, text)
        written.append(layout.tables / name)
    # The harness's own view: every released model on one protocol, with its cost.
    path = layout.tables / "leaderboard.md"
    atomic.write_text(path, render_leaderboard(pipeline_leaderboard(run)))
    written.append(path)
    # The complexity table is measured by `python -m benchmark.complexity` (minutes; not a stage) and re-rendered
    # here from its JSON records, because this stage owns results/tables/.
    measured = sorted(layout.complexity.glob("*.json"))
    if measured:
        path = layout.tables / "complexity.md"
        atomic.write_text(path, render_complexity_table([json.loads(p.read_text()) for p in measured]))
        written.append(path)
    with start_run(run.tracking, run_name="report", tags={"kind": "report", "profile": run.train.profile}) as tracked:
        for path in written:
            tracked.log_artifact(path, "tables")
    return written
