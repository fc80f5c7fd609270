"""Configuration: Hydra composition of ``conf/``, the params.yaml overlay for DVC stages, typed validated sections.

``conf/`` is the only source. ``dvc exp run -S key=value`` composes it into ``params.yaml``; stage commands pass
``params_file=params.yaml`` so that the shared sections (``SHARED_SECTIONS``: ``train``, ``recipe``, ``eval``,
``tracking``, ``seed``, ``paths``, ``pipeline``, ``figures``) come
from that file, while each stage's model and dataset files come from ``conf/`` through its own ``model=``/``dataset=``
overrides (those files are dependencies of the stages, so editing one re-runs exactly its stages).

Every section is turned into a frozen dataclass here; a bad value raises ``ConfigError`` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SHARED_SECTIONS = ("train", "recipe", "eval", "tracking", "seed", "paths", "pipeline", "figures")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the dotted key."""


def project_root() -> Path:
    """The checkout this package runs from (the folder holding dvc.yaml), else the current directory.

    Inside a DVC experiment's temporary workspace (``dvc exp run --temp/--queue``) this is that workspace;
    ``experiment_home`` names the repository it belongs to.
    """
    here = Path(__file__).resolve().parents[1]
    if (here / "dvc.yaml").exists() or (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def experiment_home(root: Path | None = None) -> Path:
    """The repository a checkout belongs to: ``root`` itself, or, for a DVC experiment's temporary workspace
    (``<repo>/.dvc/tmp/exps/<tmp>/``, where `dvc exp run --temp` and queued experiments run and which DVC deletes
    afterwards), the ``<repo>`` that launched it. Records that must outlive a run (mlflow.db) go there."""
    root = (root or project_root()).resolve()
    parts = root.parts
    for i in range(len(parts) - 3, 0, -1):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides, exactly as the entry points and `dvc exp run` do."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a @hydra.main entry point, whose search path is conf/
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose(config_name="config", overrides=list(overrides))


RECIPES = ("common", "published")
EXECUTION_TRAIN_KEYS = (
    "checkpoint_every",
    "val_every",
    "log_every",
    "num_workers",
    "resume",
    "device",
    "cache",
    "compile",
)
"""``train`` keys that say how a run executes, not what it learns: kept from the common section under any recipe, and
left out of the checkpoint fingerprint (a run resumes under new values of them). ``cache`` serves bit-identical
pixels; ``compile`` runs the same graph through ``torch.compile``."""


def resolve_recipe(cfg: DictConfig) -> DictConfig:
    """Apply ``cfg.recipe``: which training recipe a model is trained with.

    - ``common`` (default): the ``train`` section as composed (``train=<profile>``), the same for every model: a
      controlled comparison.
    - ``published``: the ``train`` section becomes the profile named by the model file's ``recipe`` key
      (``conf/train/<recipe>.yaml``, each the release's own optimiser, schedule, batch, crop and augmentation), except
      the execution keys (``EXECUTION_TRAIN_KEYS``), which stay as set. A model with ``recipe: null`` (identity: nothing
      to train) keeps the common section.

    The loss is always the model's own (``DeblurModel.loss``): multi-output supervision is part of each architecture.
    """
    recipe = cfg.get("recipe", "common")
    if recipe not in RECIPES:
        raise ConfigError(f"recipe: must be one of {', '.join(RECIPES)}, got {recipe!r}")
    profile = cfg.model.get("recipe")
    if recipe == "common" or profile is None:
        return cfg
    if not (CONF_DIR / "train" / f"{profile}.yaml").is_file():
        raise ConfigError(
            f"model.recipe: {cfg.model.name!r} names train profile {profile!r}, but conf/train/{profile}.yaml does "
            f"not exist; fix conf/model/{cfg.model.name}.yaml or use recipe=common"
        )
    published = OmegaConf.to_container(compose([f"train={profile}"]).train, resolve=True)
    assert isinstance(published, dict)
    for key in EXECUTION_TRAIN_KEYS:
        if key in cfg.train:
            published[key] = cfg.train[key]
    merged = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(merged, dict)
    merged["train"] = published
    return OmegaConf.create(merged)


def apply_params_file(cfg: DictConfig) -> DictConfig:
    """Overlay the sections of ``cfg.params_file`` (params.yaml) that a DVC stage must honour; see module docstring."""
    if not cfg.get("params_file"):
        return cfg
    path = Path(cfg.params_file)
    if not path.is_file():
        raise ConfigError(f"params_file: {path} does not exist; run from the repository root or drop params_file=")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"params_file: {path} is not valid YAML ({err}); regenerate it with `dvc exp run`") from err
    merged = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(merged, dict)
    for key in SHARED_SECTIONS:
        if key in params:
            merged[key] = params[key]
    return OmegaConf.create(merged)


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """A resolved plain-dict copy of the config (for MLflow params, checkpoints and fingerprints)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out


# --- typed sections -------------------------------------------------------------------------------------------


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (elem, *rest) = typing.get_args(tp)
        if rest and rest[0] is not Ellipsis and len(value) != len(typing.get_args(tp)):
            raise ConfigError(f"{key}: expected {len(typing.get_args(tp))} values, got {list(value)!r}")
        return tuple(_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def build(cls: type, mapping: Mapping[str, Any] | DictConfig, prefix: str):
    """Build the frozen dataclass ``cls`` from ``mapping``; unknown, missing or mistyped keys name ``prefix.key``."""
    if isinstance(mapping, DictConfig):
        mapping = OmegaConf.to_container(mapping, resolve=True)  # type: ignore[assignment]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; valid keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing")
            continue
        kwargs[name] = _coerce(mapping[name], hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(prefix)
    return obj


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def validate(self, prefix: str) -> None:
        _require(self.name in ("adam", "adamw"), f"{prefix}.name", f"must be adam or adamw, got {self.name!r}")
        _require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        _require(all(0 <= b < 1 for b in self.betas), f"{prefix}.betas", f"must lie in [0, 1), got {self.betas}")
        _require(self.eps > 0, f"{prefix}.eps", f"must be > 0, got {self.eps}")
        _require(self.weight_decay >= 0, f"{prefix}.weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class SchedulerConfig:
    name: str
    step_epochs: int = 500
    gamma: float = 0.5
    min_lr: float = 0.0
    warmup_epochs: int = 0

    def validate(self, prefix: str) -> None:
        _require(
            self.name in ("step", "cosine", "constant"),
            f"{prefix}.name",
            f"must be step, cosine or constant, got {self.name!r}",
        )
        _require(self.step_epochs > 0, f"{prefix}.step_epochs", f"must be > 0, got {self.step_epochs}")
        _require(0 < self.gamma <= 1, f"{prefix}.gamma", f"must lie in (0, 1], got {self.gamma}")
        _require(self.min_lr >= 0, f"{prefix}.min_lr", f"must be >= 0, got {self.min_lr}")
        _require(self.warmup_epochs >= 0, f"{prefix}.warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")


@dataclass(frozen=True)
class TrainConfig:
    profile: str
    epochs: int
    max_steps: int | None
    batch_size: int
    crop_size: int
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    checkpoint_every: int
    val_every: int
    log_every: int
    num_workers: int = 0
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cache: bool = False
    resume: bool | str = "auto"
    augment: str = "flips"

    def validate(self, prefix: str) -> None:
        for name in ("epochs", "batch_size", "crop_size", "checkpoint_every", "val_every", "log_every"):
            _require(getattr(self, name) > 0, f"{prefix}.{name}", f"must be > 0, got {getattr(self, name)}")
        _require(
            self.max_steps is None or self.max_steps > 0,
            f"{prefix}.max_steps",
            f"must be null or > 0, got {self.max_steps}",
        )
        _require(self.num_workers >= 0, f"{prefix}.num_workers", f"must be >= 0, got {self.num_workers}")
        _require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"{prefix}.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        from benchmark.data import AUGMENTATIONS

        _require(
            self.augment in AUGMENTATIONS,
            f"{prefix}.augment",
            f"must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}",
        )
        _require(
            self.resume in (True, False, "auto"),
            f"{prefix}.resume",
            f"must be auto, true or false, got {self.resume!r}",
        )


@dataclass(frozen=True)
class Protocol:
    """How a benchmark scores a restoration; dataset config, stated under every table.

    Attributes:
        quantize: ``uint8`` = clamp and round outputs to 8 bit before scoring (the papers' protocol); ``none``.
        ssim_variant: a key of ``benchmark.metrics.SSIM_VARIANTS`` (e.g. ``gaussian2d``).
        align: ``none`` (a later protocol adds RealBlur's ECC alignment).
        crop_border: pixels removed from each border before scoring.
    """

    quantize: str
    ssim_variant: str
    align: str = "none"
    crop_border: int = 0
    extra_ssim_variants: tuple[str, ...] = ()

    def validate(self, prefix: str) -> None:
        from benchmark.metrics import SSIM_VARIANTS

        _require(
            self.quantize in ("uint8", "none"), f"{prefix}.quantize", f"must be uint8 or none, got {self.quantize!r}"
        )
        _require(
            self.ssim_variant in SSIM_VARIANTS,
            f"{prefix}.ssim_variant",
            f"must be one of {', '.join(SSIM_VARIANTS)}, got {self.ssim_variant!r}",
        )
        _require(self.align in ("none", "ecc"), f"{prefix}.align", f"must be none or ecc, got {self.align!r}")
        _require(self.crop_border >= 0, f"{prefix}.crop_border", f"must be >= 0, got {self.crop_border}")
        unknown = [v for v in self.extra_ssim_variants if v not in SSIM_VARIANTS or v == self.ssim_variant]
        _require(
            not unknown,
            f"{prefix}.extra_ssim_variants",
            f"{unknown} are not other variants of {', '.join(SSIM_VARIANTS)}",
        )
        if self.align == "ecc":
            # RealBlur's official protocol fixes both metrics (masked after alignment); nothing else is defined there.
            _require(
                self.ssim_variant == "gaussian2d" and not self.extra_ssim_variants and self.crop_border == 0,
                f"{prefix}.align",
                "ecc (RealBlur's protocol) scores its own masked Gaussian SSIM: set ssim_variant gaussian2d, no "
                "extra_ssim_variants and crop_border 0",
            )

    def describe(self) -> str:
        """One line for table footers and MLflow tags."""
        q = "outputs clamped and rounded to 8 bit" if self.quantize == "uint8" else "outputs clamped, not rounded"
        if self.align == "ecc":
            return (
                f"{q}; RealBlur's official protocol (evaluation_RealBlur_ecc.py): intensity matching and ECC "
                "homography alignment to the ground truth, PSNR over the valid warped pixels, masked Gaussian SSIM "
                "with a 5 px border crop"
            )
        extra = "".join(f"; second SSIM column `{v}`" for v in self.extra_ssim_variants)
        return (
            f"{q}; PSNR on RGB; SSIM variant `{self.ssim_variant}`{extra}; alignment: {self.align}; "
            f"border crop: {self.crop_border} px"
        )


@dataclass(frozen=True)
class TLCConfig:
    base_ratio: float = 1.5
    train_size: int | None = None

    def validate(self, prefix: str) -> None:
        _require(self.base_ratio >= 1, f"{prefix}.base_ratio", f"must be >= 1, got {self.base_ratio}")
        _require(
            self.train_size is None or self.train_size > 0,
            f"{prefix}.train_size",
            f"must be null or > 0, got {self.train_size}",
        )


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 1
    device: str = "auto"
    tlc: TLCConfig = field(default_factory=TLCConfig)

    def validate(self, prefix: str) -> None:
        _require(self.batch_size > 0, f"{prefix}.batch_size", f"must be > 0, got {self.batch_size}")


def model_overrides(cfg: DictConfig) -> dict[str, Any]:
    """Constructor overrides of ``cfg.model`` as a plain dict (lists become tuples, matching typed constructors)."""
    raw = cfg.model.get("overrides") or {}
    if not isinstance(raw, Mapping | DictConfig):
        raise ConfigError(f"model.overrides: expected a mapping, got {raw!r}")
    plain = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()}
