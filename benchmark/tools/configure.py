"""The ``configure`` stage: every stage's configuration built and checked up front, its inputs written for DVC.

For each stage of the pipeline (``benchmark.core.stages.pipeline_stages``) this builds the :class:`RunConfig` the
stage itself will build, from params.yaml and ``conf/`` (``load_config`` with the stage's ``model=``/``dataset=``
selection), resolves the training recipe, builds every model on the ``meta`` device (an unknown constructor argument
fails here, naming ``model.overrides.<arg>``), and writes the stage's inputs (``stage_inputs``) to
``stages/<stage>.json``. Being the first stage of the DAG, it stops a bad key before any data is fetched or any model
trained. Files of stages that no longer exist are removed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.core import atomic
from benchmark.core.config import RunConfig, load_config, resolve_recipe
from benchmark.core.layout import Layout
from benchmark.core.stages import Stage, pipeline_stages, stage_inputs
from benchmark.weights.resolve import build_model


def stage_config(stage: Stage, params_file: Path) -> RunConfig:
    """The configuration ``stage`` runs with (recipe resolved for training), as the stage's own command builds it."""
    run = load_config([*stage.overrides, f"params_file={params_file}"])
    return resolve_recipe(run) if stage.kind in ("train", "evaluate") else run


def configure(params_file: Path, layout: Layout | None = None) -> list[Path]:
    """Check every stage's configuration and write ``stages/<stage>.json``; returns the written files."""
    top = load_config([f"params_file={params_file}"])
    layout = layout or Layout(top.paths)
    inputs = {}
    for stage in pipeline_stages(top.pipeline):  # check everything before writing anything
        run = stage_config(stage, params_file)
        if stage.kind in ("train", "evaluate"):
            with torch.device("meta"):
                build_model(run.model)
        inputs[layout.stage_inputs(stage.name)] = stage_inputs(stage.kind, run)
    written = []
    for path, data in inputs.items():
        atomic.write_json(path, data)
        written.append(path)
    folder = layout.stage_inputs("x").parent
    for stale in sorted(set(folder.glob("*.json")) - set(written)):
        stale.unlink()
    return written
