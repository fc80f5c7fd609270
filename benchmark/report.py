"""``python -m benchmark.report``: every table of ``<results>/tables/`` from the evaluation records (the report stage).

``benchmark.reporting``: the pipeline's tables, the paper's Tables 1-3 beside the reported numbers, complexity.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra
from benchmark.core.stages import verify_stage_inputs
from benchmark.reporting.report import run_report


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit():
        run = from_hydra()
        verify_stage_inputs("report", run)
        written = run_report(run)
    for path in written:
        print(f"[report] {path}")


if __name__ == "__main__":
    main()
