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
        path: The file (a folder for a release of ``format: modules`` or ``tensorflow``), ``None`` for ``none``.
        train_dataset: The dataset the weights were trained on.
        train_size: A release's training crop (its ``train_size``), for the TLC window; ``None`` otherwise.
    """

    kind: Literal["pipeline", "release", "file", "none"]
    path: Path | None
    train_dataset: str
    train_size: int | None = None

    def record_path(self, layout: Layout, dataset: str, model: str, tlc: bool) -> Path:
        """Where the record of these weights on ``dataset`` goes: never over the pipeline's own for a release."""
        return layout.record(self.train_dataset, dataset, model, tlc, release=self.kind == "release")


def resolve_weights(
    model: ModelConfig,
    layout: Layout,
    *,
    checkpoint: str | None,
    train_dataset: str | None,
    dataset: str,
    has_parameters: bool,
) -> Weights:
    """The weights ``checkpoint`` names: ``None`` = this pipeline's ``final.pt`` of ``model`` trained on
    ``train_dataset`` (default: ``dataset``), ``release`` = the published checkpoint of ``model.release`` trained on
    ``train_dataset`` (default: the GoPro one, or the only one), anything else = a path.

    Raises:
        ConfigError: ``checkpoint=release`` for a model without a release, or without one for that training set.
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
        trained_on, published = release.checkpoint(train_dataset)
        path = layout.release_weights(model.name, published.file)
        folder = published.format in ("modules", "tensorflow")
        if not (path.is_dir() if folder else path.is_file()):
            what = "folder" if folder else "file"
            raise CheckpointError(
                f"checkpoint=release: {path} does not exist. Download the {what} {published.file} from "
                f"{published.url or release.url} ({release.source}) and place it there; data.dvc tracks that folder "
                "(`dvc add data/external`)."
            )
        return Weights("release", path, trained_on, published.train_size)
    trained_on = train_dataset or dataset
    if checkpoint:
        return Weights("file", Path(checkpoint), trained_on)
    if has_parameters:
        return Weights("pipeline", layout.final_checkpoint(model.name, trained_on), trained_on)
    return Weights("none", None, trained_on)


def load_weights(model: DeblurModel, weights: Weights) -> DeblurModel:
    """Load ``weights`` into ``model`` strictly (any release format, ``models.load_checkpoint``); ``none`` loads
    nothing."""
    if weights.path is not None:
        load_checkpoint(model, weights.path)
    return model
