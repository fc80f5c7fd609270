"""``python -m benchmark.train model=<name> dataset=<name> [key=value ...]``: train one model (``benchmark.training``).

Also under ``torchrun --nproc_per_node=N -m benchmark.train ...`` (every rank runs this) and Hydra's submitit
launcher (``--multirun hydra/launcher=slurm ...``). The ``train@<model>-<dataset>`` stages add
``params_file=params.yaml``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra, resolve_recipe
from benchmark.core.stages import verify_stage_inputs
from benchmark.training.loop import run_training
from models import CheckpointError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit(CheckpointError):
        run = resolve_recipe(from_hydra())
        verify_stage_inputs("train", run)
        result = run_training(run)
    if result.is_main:
        val = f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
        print(f"[train] {result.steps} steps -> {result.final_path}{val}")


if __name__ == "__main__":
    main()
