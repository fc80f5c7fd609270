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
    Protocol,
    TrainConfig,
    apply_params_file,
    build,
    compose,
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
    ],
)
def test_bad_protocol_value_names_its_key(override: str, key: str) -> None:
    cfg = compose([override])
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
