"""conf/hydra/launcher/: the submitit launcher options (SLURM, local) parse as pure YAML and compose with the plugin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
LAUNCHER_DIR = CONF_DIR / "hydra" / "launcher"
EXTENDS = {"slurm": "submitit_slurm", "local": "submitit_local"}
TARGETS = {
    "slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
}


def _interpolations(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _interpolations(value)]
    if isinstance(node, list):
        return [s for value in node for s in _interpolations(value)]
    return re.findall(r"\$\{([^}]*)\}", node) if isinstance(node, str) else []


@pytest.mark.parametrize("name", sorted(EXTENDS))
def test_launcher_yaml_extends_the_plugin_config(name: str) -> None:
    raw = yaml.safe_load((LAUNCHER_DIR / f"{name}.yaml").read_text())
    assert raw["defaults"] == [EXTENDS[name], "_self_"]
    assert raw["nodes"] == 1
    assert raw["timeout_min"] == 4320
    assert raw["gpus_per_node"] >= 1  # 0/null would make the local executor hide every GPU (CUDA_VISIBLE_DEVICES="")
    assert raw["tasks_per_node"] == "${.gpus_per_node}"  # one task per GPU = one DDP rank
    assert raw["submitit_folder"].startswith("${hydra.sweep.dir}/")  # multirun/<date>/<time>/ by default
    # Plain interpolations only: no ${resolver:...}, since DVC composes conf/ without importing our code.
    assert all(":" not in ref for ref in _interpolations(raw))


def test_the_default_sweep_stays_on_the_basic_launcher() -> None:
    raw = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    assert not any(isinstance(entry, dict) and "override hydra/launcher" in entry for entry in raw["defaults"])


def _compose_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", sorted(EXTENDS))
def test_launcher_composes_with_the_plugin(name: str, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.utils import instantiate

    cfg = _compose_hydra([f"hydra/launcher={name}", f"hydra.sweep.dir={tmp_path}"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == TARGETS[name]
    assert launcher.tasks_per_node == launcher.gpus_per_node == (4 if name == "slurm" else 1)
    assert launcher.submitit_folder == f"{tmp_path}/.submitit/%j"
    # Instantiation only stores the resolved parameters (nothing is submitted): every value has its final type.
    params = instantiate(launcher).params
    assert params["tasks_per_node"] == params["gpus_per_node"]
    assert isinstance(params["tasks_per_node"], int)


def test_slurm_launcher_values() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _compose_hydra(["hydra/launcher=slurm"]).hydra.launcher
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.timeout_min) == (8, 128, 4320)
    assert launcher.partition is None  # the cluster's default partition unless overridden


def test_overriding_gpus_per_node_keeps_one_task_per_gpu() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _compose_hydra(["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=2"]).hydra.launcher
    assert launcher.gpus_per_node == launcher.tasks_per_node == 2


def test_unknown_launcher_field_is_a_composition_error() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        _compose_hydra(["hydra/launcher=slurm", "hydra.launcher.gpus_per_nod=2"])
