"""The run configuration: ``conf/`` composed by Hydra, ``params.yaml`` overlaid for DVC stages, one typed object.

Every entry point builds one :class:`RunConfig` with :func:`load_config` (or :func:`from_hydra` inside a
``@hydra.main``) and reads nothing else. Building checks everything: an unknown key anywhere, a missing one or a bad
value raises :class:`ConfigError` naming the dotted key and the file it came from.

**params.yaml** (``params_file=params.yaml``, how every DVC stage runs) is ``conf/`` composed by ``dvc exp run -S``
(or ``python -m benchmark.params``); what it says is what the stage runs with:

- every section except ``model`` and ``dataset`` replaces the composed one;
- ``model`` and ``dataset`` are the files of ``model.name`` / ``dataset.name`` as composed there (edited by ``-S
  model.overrides.width=8``): a stage that selects that model (dataset) runs with it, a stage that selects another one
  (``model=<other>``) reads that one's file from ``conf/``, and a stage that selects none (report, figures) keeps
  params.yaml's, so :func:`model_config` finds the edit for its name. An edit of a model (dataset) that no stage runs
  (not in ``pipeline.models`` / ``pipeline.datasets``) is refused, naming the key, since it would change nothing;
- the invocation keys (:data:`INVOCATION_KEYS`: ``checkpoint``, ``tlc``, ...) are arguments of single commands, set
  by each stage on its command line; a value other than the default in params.yaml is refused;
- under ``recipe=published`` each model trains with its release's profile, so a change of a ``train`` key other than
  the execution keys would change nothing and is refused;
- on the command line, only ``model=``, ``dataset=`` and invocation keys may accompany ``params_file=``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, OmegaConf

from benchmark.core.errors import ConfigError
from benchmark.core.layout import CONF_DIR, Layout
from benchmark.core.schema import build, to_plain
from benchmark.core.sections import (
    EXECUTION_TRAIN_KEYS,
    DatasetConfig,
    EvalConfig,
    FiguresConfig,
    ModelConfig,
    PathsConfig,
    PipelineConfig,
    Recipe,
    TrackingConfig,
    TrainConfig,
)

_INVOCATION = {"invocation": True}


@dataclass(frozen=True)
class RunConfig:
    """Everything an entry point reads: ``conf/config.yaml``'s top-level keys, one field each.

    Invocation keys (metadata ``invocation``) are arguments of a single command, never experiment parameters:

    Attributes:
        checkpoint: evaluate: ``None`` = the pipeline's ``final.pt``; ``release`` = the authors' file named in the
            model's ``release``; or a path to a checkpoint in any release format.
        train_dataset: evaluate: which training dataset's checkpoint to score (``None`` = the evaluation dataset; with
            ``checkpoint=release``, the GoPro-trained release or the only one).
        tlc: evaluate: score the TLC-converted model; a list (``[false,true]``) scores both in one process.
        archive: fetch: use this archive instead of the placed or downloaded one.
        rehash: fetch: hash the dataset folder again and record its identity, instead of fetching.
        params_file: DVC stages: overlay this params.yaml (module docstring).
        input: deblur: a blurry PNG (or a folder of them) to restore.
        output: deblur: the PNG (or folder) to write; never one of the inputs.
        gt: deblur: the sharp PNG (or folder, same file names) to score the restorations against.
        tile: deblur: restore in overlapping ``tile`` px tiles, overlaps averaged (``benchmark.scoring.tiles``).
        protocol: deblur: score with ``gt`` under ``official`` (``dataset.protocol``) or ``release`` (the model's
            release protocol for ``dataset``).
        outputs: evaluate: score this folder of result images (the authors' published ones, or ``benchmark.deblur``'s)
            instead of running the model (``benchmark.evaluation.outputs``).
        allow_missing: evaluate with ``outputs``: score the test images the folder holds when some are missing
            (the record and the tables say so) instead of refusing.
        name_map: evaluate with ``outputs``: the ``eval.name_maps`` rule naming the folder's files; ``None`` = the
            release's rule for the dataset (``model.release.outputs``), else the dataset's own names (``same``).
    """

    model: ModelConfig
    dataset: DatasetConfig
    train: TrainConfig
    eval: EvalConfig
    tracking: TrackingConfig
    pipeline: PipelineConfig
    figures: FiguresConfig
    paths: PathsConfig
    seed: int
    recipe: Recipe = "common"
    checkpoint: str | None = field(default=None, metadata=_INVOCATION)
    train_dataset: str | None = field(default=None, metadata=_INVOCATION)
    tlc: bool | tuple[bool, ...] = field(default=False, metadata=_INVOCATION)
    archive: str | None = field(default=None, metadata=_INVOCATION)
    rehash: bool = field(default=False, metadata=_INVOCATION)
    params_file: str | None = field(default=None, metadata=_INVOCATION)
    input: str | None = field(default=None, metadata=_INVOCATION)
    output: str | None = field(default=None, metadata=_INVOCATION)
    gt: str | None = field(default=None, metadata=_INVOCATION)
    tile: int | None = field(default=None, metadata=_INVOCATION)
    protocol: Literal["official", "release"] = field(default="official", metadata=_INVOCATION)
    outputs: str | None = field(default=None, metadata=_INVOCATION)
    allow_missing: bool = field(default=False, metadata=_INVOCATION)
    name_map: str | None = field(default=None, metadata=_INVOCATION)

    def check(self, prefix: str) -> None:
        if self.seed < 0:
            raise ConfigError(f"must be >= 0, got {self.seed}", key="seed")
        settings = self.tlc if isinstance(self.tlc, tuple) else (self.tlc,)
        if not settings:
            raise ConfigError("expected true, false or a list of them, got []", key="tlc")
        if self.tile is not None and self.tile < 16:
            raise ConfigError(f"must be null or >= 16, got {self.tile}", key="tile")
        rules = self.eval.name_maps
        known = f"known: {', '.join(rules)} (eval.name_maps)"
        if self.name_map is not None and self.name_map not in rules:
            raise ConfigError(f"no name map {self.name_map!r}; {known}", key="name_map")
        outputs = self.model.release.outputs if self.model.release is not None else {}
        for dataset, published in outputs.items():
            if published.name_map is not None and published.name_map not in rules:
                raise ConfigError(
                    f"no name map {published.name_map!r}; {known}", key=f"model.release.outputs.{dataset}.name_map"
                )

    @property
    def layout(self) -> Layout:
        return Layout(self.paths)

    @property
    def tlc_settings(self) -> tuple[bool, ...]:
        """``tlc`` as a tuple: ``(False,)``, ``(True,)`` or ``(False, True)``."""
        return self.tlc if isinstance(self.tlc, tuple) else (self.tlc,)

    @property
    def weights_train_dataset(self) -> str:
        """The dataset the scored weights were trained on (released weights: the checkpoint ``train_dataset`` picks)."""
        if self.checkpoint == "release" and self.model.release is not None:
            return self.model.release.checkpoint(self.train_dataset)[0]
        return self.train_dataset or self.dataset.name

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (MLflow params, checkpoints, stage inputs)."""
        return to_plain(self)


INVOCATION_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("invocation"))
"""Top-level keys that are arguments of single commands (see :class:`RunConfig`)."""
SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in INVOCATION_KEYS)
"""Top-level keys that params.yaml carries to the stages; tests/test_config.py checks them against conf/config.yaml."""
_SELECTED = ("model", "dataset")
"""Sections a stage selects by name (``model=``, ``dataset=``) rather than takes whole from params.yaml."""


# --- composition -------------------------------------------------------------------------------------------------


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides, exactly as the entry points and ``dvc exp run`` do."""
    return OmegaConf.create(_composed(tuple(overrides))[0])


def _conf_signature() -> tuple[str, tuple[tuple[str, int], ...]]:
    files = sorted(CONF_DIR.rglob("*.yaml"))
    return str(CONF_DIR), tuple((str(p), p.stat().st_mtime_ns) for p in files)


def _composed(overrides: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """The composed config as plain data and the group choices: a fresh copy of a result memoised per conf/ state
    (the configure stage composes the same files for every stage; Hydra takes ~50 ms a composition)."""
    plain, choices = _composed_memo(overrides, _conf_signature())
    return copy.deepcopy(plain), dict(choices)


@functools.lru_cache(maxsize=256)
def _composed_memo(overrides: tuple[str, ...], signature: object) -> tuple[dict[str, Any], dict[str, str]]:
    cfg = _hydra_compose(overrides, with_hydra=True)
    choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if "/" not in str(k)}
    return _plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])), choices


def _hydra_compose(overrides: Sequence[str], *, with_hydra: bool) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def run() -> DictConfig:
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)

    try:
        if GlobalHydra.instance().is_initialized():  # inside a @hydra.main entry point, whose search path is conf/
            return run()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return run()
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot compose conf/ with {list(overrides)}: {err}") from err


def _plain(cfg: DictConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out


def _override_keys(overrides: Sequence[str]) -> list[tuple[str, bool]]:
    """``(key, is_group_selection)`` for each command-line override (``hydra.*`` ones left out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    out = []
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra"):
            continue
        out.append((key, "." not in key and (CONF_DIR / key).is_dir()))
    return out


# --- where each value came from ------------------------------------------------------------------------------------


@dataclass
class _Sources:
    """The file (or the command line) each section came from, for error messages."""

    sections: dict[str, str]
    cli_keys: list[str]

    def of(self, key: str | None) -> str:
        if key is None:
            return "the configuration"
        if any(key == k or key.startswith(f"{k}.") or key.startswith(f"{k}[") for k in self.cli_keys):
            return "the command line"
        return self.sections.get(key.split(".")[0].split("[")[0], "conf/config.yaml")


def _group_sources(choices: Mapping[str, str]) -> dict[str, str]:
    return {group: f"conf/{group}/{choice}.yaml" for group, choice in choices.items() if group in SECTIONS}


# --- params.yaml -------------------------------------------------------------------------------------------------


def _read_params(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist; run from the repository root or drop params_file=", key="params_file"
        )
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}); regenerate it (python -m benchmark.params)") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of sections; regenerate it (python -m benchmark.params)")
    for key in params:
        if key not in SECTIONS and key not in INVOCATION_KEYS:
            raise ConfigError(
                f"unknown key; valid keys: {', '.join(sorted(SECTIONS + INVOCATION_KEYS))}", key=key, source=str(path)
            )
    return params


def _first_difference(a: Any, b: Any, key: str) -> str | None:
    """The first dotted key at which ``a`` and ``b`` differ (``None`` if equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            found = _first_difference(a.get(k), b.get(k), f"{key}.{k}")
            if found:
                return found
        return None
    return None if a == b else key


def _conf_file(group: str, name: object, source: str | None = None) -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` as composed; a name without a file is an error naming ``<group>.name``."""
    if not isinstance(name, str) or not (CONF_DIR / group / f"{name}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))
        raise ConfigError(f"{name!r} has no conf/{group}/ file; known: {known}", key=f"{group}.name", source=source)
    return _composed((f"{group}={name}",))[0][group]


def _check_selected_edits(params: dict[str, Any], path: Path) -> None:
    """Refuse an edit of a model or dataset section that no stage of the pipeline runs (module docstring)."""
    pipeline = params.get("pipeline") or {}
    runs = {"model": pipeline.get("models") or (), "dataset": pipeline.get("datasets") or ()}
    for section in _SELECTED:
        if section not in params:
            continue
        edited = params[section]
        name = edited.get("name") if isinstance(edited, Mapping) else None
        changed = _first_difference(edited, _conf_file(section, name, str(path)), section)
        if changed and name not in runs[section]:
            raise ConfigError(
                f"params.yaml changes {section} {name!r}, which no stage runs (it is not in pipeline."
                f"{section}s); add it to pipeline.{section}s, or select another with -S {section}=<name>",
                key=changed,
                source=str(path),
            )


def _check_published_train(params: dict[str, Any], path: Path) -> None:
    """Under ``recipe=published`` only the execution keys of ``train`` reach a stage: refuse any other change."""
    train = params.get("train")
    if params.get("recipe") != "published" or not isinstance(train, Mapping):
        return
    try:
        conf = _conf_file("train", train.get("profile"), str(path))
    except ConfigError as err:
        raise ConfigError(err.message, key="train.profile", source=str(path)) from None
    for key in sorted(set(train) | set(conf)):
        if key in EXECUTION_TRAIN_KEYS:
            continue
        changed = _first_difference(train.get(key), conf.get(key), f"train.{key}")
        if changed:
            raise ConfigError(
                "recipe=published trains each model with its release's profile (conf/train/<model.recipe>.yaml) and "
                f"takes only the execution keys ({', '.join(EXECUTION_TRAIN_KEYS)}) from train; edit the "
                "release's profile or use recipe=common",
                key=changed,
                source=str(path),
            )


def _overlay(plain: dict[str, Any], sources: _Sources, overrides: list[tuple[str, bool]], path: Path) -> dict[str, Any]:
    """``plain`` with params.yaml's sections applied (module docstring)."""
    for key, is_group in overrides:
        allowed = (is_group and key in _SELECTED) or key in INVOCATION_KEYS
        if not allowed:
            raise ConfigError(
                "set on the command line together with params_file=; with params_file only model=, dataset= and "
                f"{', '.join(INVOCATION_KEYS)} may be given: change params.yaml instead (dvc exp run -S {key}=...)",
                key=key,
                source="the command line",
            )
    params = _read_params(path)
    defaults = _composed(())[0]
    for key in INVOCATION_KEYS:
        if key in params and key != "params_file" and params[key] != defaults[key]:
            raise ConfigError(
                f"params.yaml sets it to {params[key]!r}, but it is an argument of single commands, not an experiment "
                "parameter (each stage sets it on its command line in dvc.yaml); regenerate params.yaml without it "
                "(python -m benchmark.params)",
                key=key,
                source=str(path),
            )
    _check_selected_edits(params, path)
    _check_published_train(params, path)
    merged = dict(plain)
    selected = {key for key, is_group in overrides if is_group}
    for key, value in params.items():
        if key in INVOCATION_KEYS:
            continue
        if key in selected and (not isinstance(value, Mapping) or value.get("name") != plain[key]["name"]):
            continue  # another model's (dataset's) section: this stage reads its own conf file
        merged[key] = value
        sources.sections[key] = str(path)
    return merged


# --- building ----------------------------------------------------------------------------------------------------


def _build(plain: dict[str, Any], sources: _Sources) -> RunConfig:
    try:
        run = build(RunConfig, plain, "")
    except ConfigError as err:
        raise err.with_source(sources.of(err.key)) from None
    profile_file = CONF_DIR / "train" / f"{run.train.profile}.yaml"
    if not profile_file.is_file():
        raise ConfigError(
            f"no conf/train/{run.train.profile}.yaml (a profile is named after its file)",
            key="train.profile",
            source=sources.of("train.profile"),
        )
    return run


def load_config(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose ``conf/`` with ``overrides`` (as on an entry point's command line), overlay ``params_file``, build."""
    plain, choices = _composed(tuple(overrides))
    keys = _override_keys(overrides)
    sources = _Sources(_group_sources(choices), [k for k, _ in keys])
    if plain.get("params_file"):
        plain = _overlay(plain, sources, keys, Path(plain["params_file"]))
    return _build(plain, sources)


def from_hydra() -> RunConfig:
    """:func:`load_config` with the command line of the running ``@hydra.main`` job (one job of a sweep)."""
    from hydra.core.hydra_config import HydraConfig

    return load_config(list(HydraConfig.get().overrides.task))


# --- recipes -----------------------------------------------------------------------------------------------------


def resolve_recipe(run: RunConfig) -> RunConfig:
    """Apply ``run.recipe``: which training recipe ``run.model`` is trained with.

    - ``common`` (default): the ``train`` section as composed, the same for every model: a controlled comparison.
    - ``published``: the ``train`` section becomes the profile named by the model's ``recipe``
      (``conf/train/<recipe>.yaml``: the release's own optimiser, schedule, batch, crop and augmentation), except the
      execution keys, which stay as set. A model with ``recipe: null`` (identity: nothing to train) keeps the common
      section.

    The loss is always the model's own (``DeblurModel.loss``): multi-output supervision is part of each architecture.
    """
    profile = run.model.recipe
    if run.recipe == "common" or profile is None:
        return run
    if not (CONF_DIR / "train" / f"{profile}.yaml").is_file():
        raise ConfigError(
            f"{run.model.name!r} names train profile {profile!r}, but conf/train/{profile}.yaml does not exist; fix "
            f"conf/model/{run.model.name}.yaml or use recipe=common",
            key="model.recipe",
        )
    published = _conf_file("train", profile)
    for key in EXECUTION_TRAIN_KEYS:
        published[key] = getattr(run.train, key)
    try:
        train = build(TrainConfig, published, "train")
    except ConfigError as err:
        raise err.with_source(f"conf/train/{profile}.yaml") from None
    return dataclasses.replace(run, train=train)


def model_config(run: RunConfig, name: str) -> ModelConfig:
    """The configuration of model ``name`` in this run: ``run.model`` when it is that model (with the edits of the
    command line or params.yaml), else ``conf/model/<name>.yaml``."""
    return run.model if run.model.name == name else _conf_section(ModelConfig, "model", name)


def dataset_config(run: RunConfig, name: str) -> DatasetConfig:
    """The configuration of dataset ``name`` in this run, as :func:`model_config` for models."""
    return run.dataset if run.dataset.name == name else _conf_section(DatasetConfig, "dataset", name)


def _conf_section(cls: type, group: str, name: str) -> Any:
    plain = _conf_file(group, name)
    try:
        return build(cls, plain, group)
    except ConfigError as err:
        raise err.with_source(f"conf/{group}/{name}.yaml") from None
