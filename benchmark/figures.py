"""``python -m benchmark.figures``: the paper's Figures 1, 5, 6 and 7 for the pipeline's datasets (the figures stage).

Definitions in ``benchmark.reporting.figures``; one MLflow run holds the figures as artifacts.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra
from benchmark.core.stages import verify_stage_inputs
from benchmark.core.tracking import start_run
from benchmark.reporting.figures import run_figures
from models import CheckpointError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit(CheckpointError):
        run = from_hydra()
        verify_stage_inputs("figures", run)
        figures = run_figures(run)
        with start_run(run.tracking, run_name="figures", tags={"kind": "figures"}) as tracked:
            for figure in figures:
                tracked.log_artifact(figure.path, "figures")
    for figure in figures:
        print(f"[figures] {figure.path}")


if __name__ == "__main__":
    main()
