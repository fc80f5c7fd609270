"""``python -m benchmark.fetch dataset=<name> [archive=<path>] [rehash=true]``: build ``<paths.data>/<name>``.

Generates ``synthblur``, or downloads (or takes a placed archive), verifies, safely extracts and normalises a
benchmark (``benchmark.data.fetch``); records the folder's identity. ``rehash=true`` instead hashes an existing folder
again and records what it holds now. The ``fetch@<dataset>`` stages add ``params_file=params.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from benchmark.core.cli import errors_exit
from benchmark.core.config import from_hydra
from benchmark.core.stages import verify_stage_inputs
from benchmark.data.fetch import build_dataset, rehash_dataset


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(_: DictConfig) -> None:
    with errors_exit():
        run = from_hydra()
        verify_stage_inputs("fetch", run)
        if run.rehash:
            identity = rehash_dataset(run.dataset, run.layout)
            print(f"[fetch] {run.dataset.name}: recorded sha256 {identity.sha256} of {len(identity.files)} images")
            return
        archive = Path(run.archive) if run.archive else None
        built = build_dataset(run.dataset, run.layout, archive=archive)
    train, test = built.counts.get("train", 0), built.counts.get("test", 0)
    print(f"[fetch] {run.dataset.name}: {train} train / {test} test pairs in {built.root}")


if __name__ == "__main__":
    main()
