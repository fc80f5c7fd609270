"""Building a configured model and finding and loading the weights a run scores."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.core.errors import ConfigError
from benchmark.core.layout import Layout
from benchmark.core.sections import ModelConfig
from models import CheckpointError, DeblurModel, create_model, list_models, load_checkpoint


def build_model(model: ModelConfig) -> DeblurModel:
    """``create_model(model.name, **model.overrides)``; an unknown name or constructor argument names its key.

    Raises:
        ConfigError: ``model.name`` is not registered, or ``model.overrides.<arg>`` is not an argument of it.
    """
    if model.name not in list_models():
        raise ConfigError(
            f"{model.name!r} is not a registered model; registered: {', '.join(list_models())}", key="model.name"
        )
    try:
        return create_model(model.name, **model.constructor_kwargs())
    except TypeError as err:
        found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        key = f"model.overrides.{found.group(1)}" if found else "model.overrides"
        raise ConfigError(f"not accepted by {model.name}: {err}", key=key) from err


@dataclass(frozen=True)
class Weights:
    """The weights a run scores.

    Attributes:
        kind: ``pipeline`` (this pipeline's ``final.pt``), ``release`` (the authors' file), ``file`` (a path given
            with ``checkpoint=``), or ``none`` (a model without parameters: identity).
        path: The file, ``None`` for ``none``.
        train_dataset: The dataset the weights were trained on (the results folder they are filed under is
            ``release`` for released weights, else this).
    """

    kind: Literal["pipeline", "release", "file", "none"]
    path: Path | None
    train_dataset: str

    @property
    def results_source(self) -> str:
        """The folder of ``results/runs/`` the records of these weights go to: never the pipeline's for a release."""
        return "release" if self.kind == "release" else self.train_dataset


def resolve_weights(
    model: ModelConfig,
    layout: Layout,
    *,
    checkpoint: str | None,
    train_dataset: str,
    has_parameters: bool,
) -> Weights:
    """The weights ``checkpoint`` names: ``None`` = this pipeline's ``final.pt`` of ``model`` trained on
    ``train_dataset``, ``release`` = the file of ``model.release``, anything else = a path.

    Raises:
        ConfigError: ``checkpoint=release`` for a model without a release.
        CheckpointError: the released file is not placed (naming the exact path and the URL to download).
    """
    if checkpoint == "release":
        release = model.release
        if release is None:
            raise ConfigError(
                f"model {model.name!r} has no released weights (conf/model/{model.name}.yaml release: null); pass "
                "checkpoint=<path> instead",
                key="checkpoint",
            )
        path = layout.release_weights(model.name, release.file)
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint=release: {path} does not exist. Download {release.file} from {release.url} "
                f"({release.source}) and place it there; data.dvc tracks that folder (`dvc add data/external`)."
            )
        return Weights("release", path, release.trained_on)
    if checkpoint:
        return Weights("file", Path(checkpoint), train_dataset)
    if has_parameters:
        return Weights("pipeline", layout.final_checkpoint(model.name, train_dataset), train_dataset)
    return Weights("none", None, train_dataset)


def load_weights(model: DeblurModel, weights: Weights) -> DeblurModel:
    """Load ``weights`` into ``model`` strictly (any release format, ``models.load_checkpoint``); ``none`` loads
    nothing."""
    if weights.path is not None:
        load_checkpoint(model, weights.path)
    return model
