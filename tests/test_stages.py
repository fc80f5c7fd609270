"""The configure stage: every stage's inputs from params.yaml, so an edit re-runs exactly the stages it reaches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.core.config import ConfigError, compose, load_config
from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.core.stages import pipeline_stages, stage_inputs, verify_stage_inputs
from benchmark.tools.configure import configure, stage_config
from tests.conftest import REPO

DEFAULT = {
    "fetch@synthblur",
    *(f"train@{m}-synthblur" for m in ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")),
    *(f"evaluate@{m}-synthblur-synthblur" for m in ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")),
    "report",
    "figures",
}


def _params(tmp_path: Path, name: str, edit=None) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if edit:
        edit(params)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


def _inputs(tmp_path: Path, name: str, edit=None) -> dict[str, dict]:
    """Every stage's inputs file, as configure writes it for params.yaml with ``edit`` applied."""
    path = _params(tmp_path, name, edit)
    written = configure(path, Layout(PathsConfig(), root=path.parent))
    return {p.stem: json.loads(p.read_text()) for p in written}


def _computed_inputs(tmp_path: Path, name: str, edit=None) -> dict[str, dict]:
    """The same inputs, by the functions configure calls (without its model checks and files: faster)."""
    path = _params(tmp_path, name, edit)
    stages = pipeline_stages(load_config([f"params_file={path}"]).pipeline)
    return {s.name: json.loads(json.dumps(stage_inputs(s.kind, stage_config(s, path)))) for s in stages}


@pytest.fixture(scope="module")
def base_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The inputs configure writes for the committed params.yaml."""
    return _inputs(tmp_path_factory.mktemp("stages"), "base")


def test_stages_are_dvc_yamls_stages() -> None:
    """benchmark.core.stages lists the stages dvc.yaml generates (compared with `dvc stage list` itself)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    listed = subprocess.run(
        ["dvc", "stage", "list", "--name-only"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    ours = [s.name for s in pipeline_stages(load_config().pipeline)]
    assert sorted(listed) == sorted(["configure", *ours])
    assert set(ours) == DEFAULT


def test_configure_writes_every_stages_inputs(base_inputs: dict[str, dict], tmp_path: Path) -> None:
    inputs = base_inputs
    assert _computed_inputs(tmp_path, "computed") == inputs  # what the faster helper below compares against
    assert set(inputs) == DEFAULT
    train = inputs["train@nafnet_tiny-synthblur"]
    assert train["model"] == {
        "name": "nafnet_tiny",
        "overrides": dict.fromkeys(("width", "enc_blocks", "middle_blocks", "dec_blocks")),
    }
    assert train["dataset"]["val_count"] == 10
    assert "num_workers" not in train["train"] and train["train"]["max_steps"] == 900  # execution keys left out
    assert inputs["fetch@synthblur"]["dataset"]["synth"]["size"] == 256
    assert inputs["evaluate@nafnet_tiny-synthblur-synthblur"]["dataset"]["protocol"]["quantize"] == "uint8"


@pytest.mark.parametrize(
    ("what", "edit", "changed"),
    [
        (
            "the validation split retrains the dataset's models but does not regenerate the data",
            lambda p: p["dataset"].update(val_count=4),
            {f"train@{m}-synthblur" for m in ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")},
        ),
        (
            "a model's edit reaches that model's stages alone",
            lambda p: p.update(model={**compose(["model=nafnet_tiny"]).model, "overrides": {"width": 16}}),
            {"train@nafnet_tiny-synthblur", "evaluate@nafnet_tiny-synthblur-synthblur", "figures"},
        ),
        (
            "a generator parameter regenerates the data (and so, through it, everything downstream)",
            lambda p: p["dataset"]["synth"].update(size=128),
            {"fetch@synthblur"},
        ),
        (
            "the protocol re-scores, but retrains nothing",
            lambda p: p["dataset"]["protocol"].update(crop_border=4),
            {
                f"evaluate@{m}-synthblur-synthblur"
                for m in ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")
            },
        ),
        ("an execution key changes no output", lambda p: p["train"].update(num_workers=2, log_every=5), set()),
        ("MLflow settings change no output", lambda p: p["tracking"].update(experiment="other"), set()),
        (
            "paths.data moves every reader and writer of data",
            lambda p: p["paths"].update(data="/scratch/data"),
            DEFAULT - {"report"},
        ),
        (
            "a training key retrains every model",
            lambda p: p["train"].update(max_steps=100),
            {f"train@{m}-synthblur" for m in ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")},
        ),
    ],
)
def test_an_edit_changes_exactly_the_inputs_it_reaches(
    base_inputs: dict[str, dict], tmp_path: Path, what: str, edit, changed: set[str]
) -> None:
    edited = _computed_inputs(tmp_path, "edited", edit)
    found = {name for name in base_inputs.keys() | edited.keys() if base_inputs.get(name) != edited.get(name)}
    assert found == changed, what


def test_pipeline_lists_add_and_remove_stages(base_inputs: dict[str, dict], tmp_path: Path) -> None:
    def edit(p: dict) -> None:
        p["pipeline"]["models"] = ["identity", "mimo_unet_tiny"]
        p["figures"]["model"] = "mimo_unet_tiny"

    assert "train@nafnet_tiny-synthblur" in base_inputs
    fewer = _inputs(tmp_path, "fewer", edit)
    assert "train@nafnet_tiny-synthblur" not in fewer and "train@mimo_unet_tiny-synthblur" in fewer
    assert not (tmp_path / "fewer" / "stages" / "train@nafnet_tiny-synthblur.json").exists()


def test_configure_stops_a_bad_key_before_any_stage_with_the_key_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^dataset\.val_cont: unknown key"):
        _inputs(tmp_path, "bad", lambda p: p["dataset"].update(val_cont=4))
    with pytest.raises(ConfigError, match=r"^model\.overrides\.widht: not accepted by nafnet_tiny"):
        _inputs(
            tmp_path,
            "typo",
            lambda p: p.update(model={**compose(["model=nafnet_tiny"]).model, "overrides": {"widht": 16}}),
        )
    assert not (tmp_path / "bad" / "stages").exists() and not (tmp_path / "typo" / "stages").exists()


def test_a_stage_refuses_inputs_that_configure_did_not_record(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["max_steps"] = 7  # not what configure recorded for the repository's params.yaml
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    run = load_config(["model=nafnet_tiny", "dataset=synthblur", f"params_file={path}"])
    with pytest.raises(ConfigError, match=r"^params_file: .*train@nafnet_tiny-synthblur\.json is missing or does not"):
        verify_stage_inputs("train", run)
    verify_stage_inputs("train", load_config(["model=nafnet_tiny"]))  # a single run (no params_file) checks nothing
