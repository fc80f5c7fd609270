"""conf/ is the single source: params.yaml in sync, every group option composes, bad values name their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.config import (
    CONF_DIR,
    ConfigError,
    EvalConfig,
    OptimizerConfig,
    Protocol,
    TrainConfig,
    apply_params_file,
    build,
    compose,
    resolve_recipe,
)
from benchmark.params import compose_params
from models import create_model, list_models

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_is_what_conf_composes(tmp_path: Path) -> None:
    fresh = tmp_path / "params.yaml"
    compose_params(fresh)
    committed = (REPO / "params.yaml").read_text()
    assert fresh.read_text() == committed, "params.yaml is stale: run `python -m benchmark.params` and commit it"


def test_every_registered_model_has_a_conf_file_and_back() -> None:
    files = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    assert files == set(list_models())
    for name in files:
        cfg = compose([f"model={name}"])
        assert cfg.model.name == name  # the registry key is the conf key


@pytest.mark.parametrize("group", ["dataset", "train", "eval", "tracking"])
def test_every_group_option_composes_and_validates(group: str) -> None:
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        cfg = compose([f"{group}={option}"])
        build(TrainConfig, cfg.train, "train")
        build(EvalConfig, cfg.eval, "eval")
        build(Protocol, cfg.dataset.protocol, "dataset.protocol")


def test_pipeline_models_are_registered() -> None:
    cfg = compose()
    for name in cfg.pipeline.models:
        create_model(name)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=0", "train.batch_size"),
        ("train.optimizer.name=sgd", "train.optimizer.name"),
        ("train.optimizer.lr=abc", "train.optimizer.lr"),
        ("train.resume=maybe", "train.resume"),
        ("+train.bogus=1", "train.bogus"),
        ("train.optimizer.betas=[0.9]", "train.optimizer.betas"),
        ("train.device=tpu", "train.device"),
    ],
)
def test_bad_train_value_names_its_key(override: str, key: str) -> None:
    cfg = compose([override])
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        build(TrainConfig, cfg.train, "train")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.protocol.ssim_variant=ms_ssim", "dataset.protocol.ssim_variant"),
        ("dataset.protocol.quantize=uint16", "dataset.protocol.quantize"),
        ("dataset.protocol.crop_border=-1", "dataset.protocol.crop_border"),
        ("dataset.protocol.align=sift", "dataset.protocol.align"),
        ("+dataset.protocol.extra_ssim_variants=[ms_ssim]", "dataset.protocol.extra_ssim_variants"),
        ("+dataset.protocol.extra_ssim_variants=[gaussian2d]", "dataset.protocol.extra_ssim_variants"),
        ("dataset=realblur_j dataset.protocol.ssim_variant=matlab3d", "dataset.protocol.align"),
    ],
)
def test_bad_protocol_value_names_its_key(override: str, key: str) -> None:
    cfg = compose(override.split())
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        build(Protocol, cfg.dataset.protocol, "dataset.protocol")


def test_params_file_overlays_shared_sections_only(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["max_steps"] = 7
    params["model"] = {"name": "identity", "overrides": {}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = apply_params_file(compose(["model=mimo_unet_tiny", f"params_file={path}"]))
    assert cfg.train.max_steps == 7
    assert cfg.model.name == "mimo_unet_tiny"  # the stage's own model file, not params.yaml's


def test_missing_params_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params_file: .*nope\.yaml does not exist"):
        apply_params_file(compose([f"params_file={tmp_path / 'nope.yaml'}"]))


def test_cli_bad_value_exits_with_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.train",
            "train.batch_size=0",
            "tracking=none",
            f"paths.checkpoints={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "train.batch_size: must be > 0" in proc.stderr


def test_recipe_common_keeps_one_train_section_for_every_model() -> None:
    for model in ("nafnet_tiny", "hinet_tiny", "mprnet_tiny"):
        cfg = resolve_recipe(compose([f"model={model}", "train=paper"]))
        assert cfg.train.profile == "paper" and cfg.train.optimizer.lr == 1e-4


@pytest.mark.parametrize(
    ("model", "profile", "lr", "batch", "augment"),
    [
        ("mimo_unet", "mimo_unet", 1e-4, 4, "hflip"),
        ("msfsnet", "paper", 1e-4, 4, "hflip"),
        ("nafnet_w64", "nafnet_w64", 1e-3, 64, "dihedral"),
        ("hinet", "hinet", 2e-4, 64, "dihedral"),
        ("mprnet", "mprnet", 2e-4, 16, "dihedral"),
        ("mprnet_tiny", "mprnet", 2e-4, 16, "dihedral"),
    ],
)
def test_recipe_published_takes_the_models_own_profile(
    model: str, profile: str, lr: float, batch: int, augment: str
) -> None:
    cfg = resolve_recipe(compose([f"model={model}", "recipe=published", "train.device=cpu", "train.log_every=7"]))
    train = build(TrainConfig, cfg.train, "train")
    assert (train.profile, train.optimizer.lr, train.batch_size, train.augment) == (profile, lr, batch, augment)
    # Execution keys stay as set on the command line; everything that changes the weights is the recipe's.
    assert (train.device, train.log_every) == ("cpu", 7)


def test_published_recipe_facts() -> None:
    nafnet = build(TrainConfig, resolve_recipe(compose(["model=nafnet_w32", "recipe=published"])).train, "train")
    assert nafnet.optimizer == OptimizerConfig(name="adamw", lr=1e-3, betas=(0.9, 0.9), eps=1e-8, weight_decay=1e-3)
    assert (nafnet.scheduler.name, nafnet.scheduler.min_lr, nafnet.max_steps) == ("cosine", 1e-7, 200_000)
    w64 = build(TrainConfig, resolve_recipe(compose(["model=nafnet_w64", "recipe=published"])).train, "train")
    assert w64.max_steps == 400_000
    hinet = build(TrainConfig, resolve_recipe(compose(["model=hinet", "recipe=published"])).train, "train")
    assert (hinet.optimizer.name, hinet.optimizer.betas, hinet.scheduler.min_lr) == ("adam", (0.9, 0.99), 1e-7)
    mpr = build(TrainConfig, resolve_recipe(compose(["model=mprnet", "recipe=published"])).train, "train")
    assert (mpr.scheduler.warmup_epochs, mpr.scheduler.min_lr, mpr.epochs) == (3, 1e-6, 3000)
    mimo = build(TrainConfig, resolve_recipe(compose(["model=mimo_unet", "recipe=published"])).train, "train")
    assert (mimo.optimizer.name, mimo.scheduler.name, mimo.scheduler.step_epochs, mimo.epochs) == (
        "adam",
        "step",
        500,
        3000,
    )


def test_identity_has_no_recipe_and_keeps_the_common_section() -> None:
    cfg = resolve_recipe(compose(["model=identity", "recipe=published"]))
    assert cfg.train.profile == "quick"


def test_bad_recipe_values_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"^recipe: must be one of common, published, got 'mine'"):
        resolve_recipe(compose(["recipe=mine"]))
    cfg = compose(["model=nafnet_tiny", "recipe=published"])
    cfg.model.recipe = "nafnet_w128"
    with pytest.raises(ConfigError, match=r"model\.recipe: .*conf/train/nafnet_w128\.yaml does not exist"):
        resolve_recipe(cfg)


def test_every_model_recipe_names_a_train_profile() -> None:
    for name in list_models():
        recipe = compose([f"model={name}"]).model.recipe
        assert recipe is None or (CONF_DIR / "train" / f"{recipe}.yaml").is_file(), name


def test_benchmark_protocols_are_their_papers() -> None:
    gopro = build(Protocol, compose(["dataset=gopro"]).dataset.protocol, "p")
    assert (gopro.quantize, gopro.ssim_variant, gopro.extra_ssim_variants, gopro.align) == (
        "uint8",
        "gaussian2d",
        ("matlab3d",),
        "none",
    )
    assert "second SSIM column `matlab3d`" in gopro.describe()
    for name in ("realblur_j", "realblur_r"):
        realblur = build(Protocol, compose([f"dataset={name}"]).dataset.protocol, "p")
        assert realblur.align == "ecc" and "ECC homography" in realblur.describe()


def test_params_file_carries_the_pipeline_lists(tmp_path: Path) -> None:
    """`dvc exp run -S 'pipeline.models=[...]'` changes params.yaml only; the stages must read the lists from it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pipeline"]["models"] = ["identity"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = apply_params_file(compose([f"params_file={path}"]))
    assert list(cfg.pipeline.models) == ["identity"]


def test_experiment_home_escapes_dvc_temporary_workspaces(tmp_path: Path) -> None:
    from benchmark.config import experiment_home

    repo = tmp_path / "repo"
    workspace = repo / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    workspace.mkdir(parents=True)
    assert experiment_home(workspace) == repo.resolve()
    assert experiment_home(repo) == repo.resolve()
    assert experiment_home(tmp_path / "exps") == (tmp_path / "exps").resolve()
