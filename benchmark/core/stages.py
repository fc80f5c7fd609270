"""The pipeline's stages and each stage's inputs: the part of the configuration its outputs depend on.

``dvc.yaml`` fans out ``fetch@<dataset>``, ``train@<model>-<train dataset>``, ``evaluate@<model>-<train>-<test>``,
``report`` and ``figures`` over ``pipeline.*``; :func:`pipeline_stages` lists the same stages (a test compares it with
``dvc stage list``). The ``configure`` stage (``python -m benchmark.configure``) builds every stage's configuration from
params.yaml and ``conf/`` exactly as the stage itself will, and writes :func:`stage_inputs` of each to
``stages/<stage>.json``; each stage depends on its own file only. So ``dvc exp run -S <key>=<value>`` re-runs exactly
the stages whose outputs the value can change: ``-S dataset.val_count=4`` retrains the models of that dataset but
does not regenerate it, ``-S train.num_workers=8`` (an execution key) re-runs nothing, and a model's edit re-runs that
model's stages alone. ``tracking`` is in no stage's inputs: where runs are recorded does not change what a stage makes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from benchmark.core.config import RunConfig, model_config
from benchmark.core.errors import ConfigError
from benchmark.core.schema import to_plain
from benchmark.core.sections import EXECUTION_TRAIN_KEYS, PipelineConfig

StageKind = Literal["fetch", "train", "evaluate", "report", "figures"]


@dataclass(frozen=True)
class Stage:
    """One stage of ``dvc.yaml``: its name, kind and the command-line selection its configuration is composed with."""

    name: str
    kind: StageKind
    overrides: tuple[str, ...]


def pipeline_stages(pipeline: PipelineConfig) -> list[Stage]:
    """Every stage ``dvc.yaml`` generates from ``pipeline`` (besides ``configure``), in dependency order."""
    stages = [Stage(f"fetch@{d}", "fetch", (f"dataset={d}",)) for d in pipeline.datasets]
    stages += [
        Stage(f"train@{m}-{d}", "train", (f"model={m}", f"dataset={d}"))
        for m in pipeline.models
        for d in pipeline.train_datasets
    ]
    stages += [
        Stage(f"evaluate@{m}-{tr}-{te}", "evaluate", (f"model={m}", f"dataset={te}", f"train_dataset={tr}"))
        for m in pipeline.models
        for tr in pipeline.train_datasets
        for te in pipeline.datasets
    ]
    return [*stages, Stage("report", "report", ()), Stage("figures", "figures", ())]


def _pick(section: object, *keys: str) -> dict[str, Any]:
    plain = to_plain(section)
    return {k: plain[k] for k in keys}


def train_inputs(run: RunConfig) -> dict[str, Any]:
    """What determines the trained weights (besides the dataset's content): the model and its overrides, the
    dataset and its validation split, the (recipe-resolved) train section without its execution keys, the seed.

    Also the checkpoint fingerprint's payload (``benchmark.training.loop.fingerprint``)."""
    train = {k: v for k, v in to_plain(run.train).items() if k not in EXECUTION_TRAIN_KEYS}
    return {
        "model": _pick(run.model, "name", "overrides"),
        "dataset": _pick(run.dataset, "name", "val_count"),
        "train": train,
        "seed": run.seed,
    }


def stage_inputs(kind: StageKind, run: RunConfig) -> dict[str, Any]:
    """The configuration a stage's outputs depend on (``run`` composed as that stage composes it, recipe resolved)."""
    if kind == "fetch":
        return {"dataset": _pick(run.dataset, "name", "fetch", "synth"), "paths": _pick(run.paths, "data")}
    if kind == "train":
        return {**train_inputs(run), "paths": _pick(run.paths, "data", "checkpoints")}
    if kind == "evaluate":
        return {
            "model": _pick(run.model, "name", "overrides"),
            "dataset": _pick(run.dataset, "name", "protocol"),
            "eval": to_plain(run.eval),
            "weights_trained_on": run.weights_train_dataset,
            "paths": _pick(run.paths, "data", "checkpoints", "results"),
        }
    if kind == "report":
        return {
            "pipeline": to_plain(run.pipeline),
            "recipe": run.recipe,
            "train_profile": run.train.profile,
            "paths": _pick(run.paths, "results"),
        }
    models = {name: _pick(model_config(run, name), "name", "overrides") for name in run.pipeline.models}
    return {
        "pipeline": to_plain(run.pipeline),
        "figures": to_plain(run.figures),
        "models": models,
        "paths": _pick(run.paths, "data", "checkpoints", "results"),
    }


def stage_name(kind: StageKind, run: RunConfig) -> str:
    """The ``dvc.yaml`` name of the stage of ``kind`` that ``run`` is (see :func:`pipeline_stages`)."""
    if kind == "fetch":
        return f"fetch@{run.dataset.name}"
    if kind == "train":
        return f"train@{run.model.name}-{run.dataset.name}"
    if kind == "evaluate":
        return f"evaluate@{run.model.name}-{run.weights_train_dataset}-{run.dataset.name}"
    return kind


def verify_stage_inputs(kind: StageKind, run: RunConfig) -> None:
    """Under ``params_file`` (a DVC stage), refuse to run with other inputs than the ``configure`` stage recorded in
    ``stages/<stage>.json``: DVC decided whether to run this stage from that file, so the two must agree."""
    if not run.params_file:
        return
    path = run.layout.stage_inputs(stage_name(kind, run))
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != json.loads(json.dumps(stage_inputs(kind, run))):
        raise ConfigError(
            f"{path} is missing or does not match the configuration this stage runs with; run the configure stage "
            "first (`dvc repro`, which runs it before every other stage)",
            key="params_file",
        )
