"""The real pipeline end to end: `dvc repro` in a temporary copy of the repository at a smaller profile.

Checks what a user sees (the tables' rows against the records and an independent computation, MLflow runs,
`dvc metrics show`, a no-op second repro), a repro killed midway and run again, and `dvc exp run -S` reaching exactly
the stages a value changes. The pipeline is built once (module fixture); every test that changes it works on its own
copy, so no test depends on another's leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig
from benchmark.data.identity import read_identity
from benchmark.evaluation.records import read_record
from benchmark.reporting.cells import mean_ci
from tests.conftest import REPO

pytestmark = pytest.mark.slow

MODELS = ("identity", "mimo_unet_tiny", "nafnet_tiny", "msfsnet_tiny")
# Smaller than the default profile so the tests stay within a few minutes on 2 cores.
SMALL_SYNTH = {
    "train_photos": ["brick", "camera", "rocket"],
    "test_photos": ["chelsea"],
    "train_crops_per_photo": 3,
    "test_crops_per_photo": 2,
    "size": 64,
    "max_source_side": 256,
}
SMALL_PARAMS = [
    "train.max_steps=12",
    "train.crop_size=32",
    "train.batch_size=2",
    "train.checkpoint_every=2",
    "train.val_every=6",
    "dataset.val_count=3",
]
# The tests that change the built pipeline run two of its models (each further model costs a training and an
# evaluation process per changed stage); identity stays in, so that "not re-run" is checked on a real stage.
TWO_MODELS = ["pipeline.models=[identity,nafnet_tiny]", "figures.model=nafnet_tiny"]
# What the copy leaves out: the pipeline's outputs where the default layout puts them, local state, caches anywhere.
_HERE = Layout(PathsConfig(), root=REPO)
OUTPUTS = {
    _HERE.data,
    _HERE.run_dir("m", "d").parent,
    _HERE.cache("d").parent,
    _HERE.stage_inputs("s").parent,
    _HERE.results / "runs",
    _HERE.results / "plots",
    _HERE.tables,
    _HERE.figures,
    _HERE.mlflow_db,
    REPO / ".git",
    REPO / ".venv",
    REPO / ".dvc" / "tmp",
    REPO / ".dvc" / "cache",
}
ANYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    where = Path(folder)
    return {n for n in names if n in ANYWHERE or n.endswith(".egg-info") or where / n in OUTPUTS}


GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _env(mlflow_db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
        "OMP_NUM_THREADS": "2",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """A copy of the repository whose small pipeline ran once: (root, env, the `dvc repro` output)."""
    root = tmp_path_factory.mktemp("project") / "repo"
    shutil.copytree(REPO, root, ignore=_ignore)
    (root / ".dvc" / "tmp").mkdir(exist_ok=True)
    conf = root / "conf" / "dataset" / "synthblur.yaml"
    data = yaml.safe_load(conf.read_text())
    data["synth"].update(SMALL_SYNTH)
    data["val_count"] = 3
    conf.write_text(yaml.safe_dump(data, sort_keys=False))
    env = _env(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    _run(["git", "init", "-q"], root, env)
    _run([sys.executable, "-m", "benchmark.params", *SMALL_PARAMS], root, env)
    _run([*GIT, "add", "-A"], root, env)
    _run([*GIT, "commit", "-qm", "test copy"], root, env)
    repro = _run(["dvc", "repro"], root, env)
    _run([*GIT, "add", "-A"], root, env)
    _run([*GIT, "commit", "-qm", "reproduced"], root, env)
    return root, env, repro.stdout


@pytest.fixture
def project(built: tuple[Path, dict[str, str], str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the built project (with its own MLflow database), for a test that changes it."""
    root = tmp_path / "repo"
    shutil.copytree(built[0], root, symlinks=True)
    return root, _env(tmp_path / "mlflow.db")


def _layout(root: Path) -> Layout:
    """The default layout of the project copy at ``root``."""
    return Layout(PathsConfig(), root=root)


def _row(table: str, row: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dvc_repro_end_to_end(built: tuple[Path, dict[str, str], str]) -> None:
    root, env, _ = built
    layout = _layout(root)
    table = (layout.tables / "synthblur.md").read_text()
    # Every row is its record's numbers; TLC has no row where it changes nothing.
    for model in MODELS:
        for local in (False, True):
            record = read_record(layout.record("synthblur", "synthblur", model, local))
            if not record.applicable:
                assert model in ("identity", "mimo_unet_tiny") and local
                assert f"| {record.row} |" not in table
                continue
            cells = _row(table, record.row)
            assert cells[1:3] == [mean_ci(record, "psnr", 2), mean_ci(record, "ssim", 4)]
            assert record.n_images == 2 and record.names == ("chelsea_0", "chelsea_1")
    # Known answer, computed here from the PNG files: identity scores the blurry input itself.
    data = layout.dataset("synthblur") / "test"
    expected = np.mean(
        [
            peak_signal_noise_ratio(np.asarray(Image.open(data / "sharp" / p.name)), np.asarray(Image.open(p)))
            for p in sorted((data / "blur").glob("*.png"))
        ]
    )
    identity = read_record(layout.record("synthblur", "synthblur", "identity", False))
    assert identity.psnr == pytest.approx(expected, abs=1e-4)
    assert _row(table, "identity")[1].startswith(f"{expected:.2f} [")
    assert _row(table, "msfsnet_tiny")[-1] == "(reference)"
    assert "SSIM variant `gaussian2d`" in table and "window 1.5 x training size 32" in table
    for name in ("table1.md", "table2.md", "table3.md", "leaderboard.md", "complexity.md"):
        assert (layout.tables / name).is_file()
    assert "| restormer-Local | – · 33.57 |" in (layout.tables / "leaderboard.md").read_text()
    assert "| MSFS-Net-Local | 33.46 | 0.964 |" in (layout.tables / "table1.md").read_text()
    figures = sorted(p.name for p in layout.figures.glob("*.png"))
    assert figures == [
        "figure1_synthblur.png",
        "figure5_synthblur-synthblur.png",
        "figure6_synthblur_msfsnet_tiny-synthblur.png",
        "leaderboard.png",
    ]
    # `dvc metrics show` reads the records' means.
    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], root, env).stdout)
    shown = next(iter(metrics.values()))["data"]
    path = layout.record("synthblur", "synthblur", "nafnet_tiny", False)
    assert shown[layout.display(path)]["data"]["psnr"] == read_record(path).psnr

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    found = mlflow.search_runs(experiment_names=["msfs-bench"])
    kinds = found["tags.kind"].value_counts().to_dict()
    # 4 trainings; evaluations: 4 plain + NAFNet-Local + MSFS-Net-Local (TLC does not apply to identity and MIMO-UNet).
    assert kinds == {"train": 4, "evaluate": 6, "report": 1, "figures": 1}
    assert set(found["status"]) == {"FINISHED"}
    evaluated = found.loc[found["tags.kind"] == "evaluate", ["tags.model", "tags.tlc"]]
    assert sorted(map(tuple, evaluated.values.tolist())) == [
        ("identity", "false"),
        ("mimo_unet_tiny", "false"),
        ("msfsnet_tiny", "false"),
        ("msfsnet_tiny", "true"),
        ("nafnet_tiny", "false"),
        ("nafnet_tiny", "true"),
    ]
    assert sorted(p.stem for p in layout.stage_inputs("x").parent.glob("*.json")) == sorted(
        ["fetch@synthblur", "report", "figures"]
        + [f"train@{m}-synthblur" for m in MODELS]
        + [f"evaluate@{m}-synthblur-synthblur" for m in MODELS]
    )
    second = _run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in second.stdout


def test_dvc_plots_show_draws_training_curves_and_per_image_plots(built, tmp_path: Path) -> None:
    root, env, _ = built
    layout = _layout(root)
    shown = json.loads(_run(["dvc", "plots", "show", "--json"], root, env).stdout)
    assert not shown.get("errors"), shown.get("errors")
    data = {name: plots[0]["content"]["data"]["values"] for name, plots in shown["data"].items() if plots}
    for model in MODELS[1:]:  # identity trains nothing: its loss and lr files hold a header only
        folder = layout.display(layout.train_curves(model, "synthblur"))
        steps = [int(r["step"]) for r in data[f"{folder}/loss.csv"]]
        assert steps == [10, 12]  # every train.log_every = 10 steps, and the last
        assert [int(r["step"]) for r in data[f"{folder}/val.csv"]] == [6, 12]
        assert len(data[f"{folder}/lr.csv"]) == 2
    identity = read_record(layout.record("synthblur", "synthblur", "identity", False))
    for row in ("mimo_unet_tiny", "nafnet_tiny", "nafnet_tiny-Local", "msfsnet_tiny", "msfsnet_tiny-Local"):
        values = data[layout.display(layout.per_image_plot("synthblur", "synthblur", row))]
        assert [v["image"] for v in values] == list(identity.names)
        assert [float(v["identity"]) for v in values] == pytest.approx(identity.scores["psnr"], abs=1e-4)
    # The HTML page a user opens: every plot drawn (vega specs with their data inline).
    out = tmp_path / "plots"
    _run(["dvc", "plots", "show", "-o", str(out)], root, env)
    html = (out / "index.html").read_text()
    assert html.count("vegaEmbed(") >= 3 * 3 + 5 and "nafnet_tiny-Local.csv" in html


def test_killed_repro_completes_when_run_again(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    two = ["pipeline.models=[identity,mimo_unet_tiny]", "figures.model=mimo_unet_tiny"]
    _run([sys.executable, "-m", "benchmark.params", *SMALL_PARAMS, *two, "train.max_steps=24"], root, env)
    layout = _layout(root)
    last = layout.last_checkpoint("mimo_unet_tiny", "synthblur")
    proc = subprocess.Popen(
        ["dvc", "repro"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = torch.load(last, weights_only=True) if last.exists() else None
        except Exception:  # caught between the temporary file's rename and the next read: try again
            state = None
        # Only a checkpoint of this run counts (the built project holds one of a 12-step config).
        if state and state["config"]["train"]["max_steps"] == 24 and 4 <= state["step"] < 20:
            os.killpg(proc.pid, signal.SIGKILL)  # dvc and the training process it started
            killed = True
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed, "the pipeline finished before it could be killed"

    again = _run(["dvc", "repro"], root, env)
    assert "resuming" in again.stderr
    # The pipeline only: data.dvc reports "not in cache" in any clone without a DVC remote, by design.
    assert _run(["dvc", "status", "dvc.yaml"], root, env).stdout.strip() == "Data and pipelines are up to date."
    assert not list(last.parent.rglob("*.tmp"))
    assert torch.load(layout.final_checkpoint("mimo_unet_tiny", "synthblur"), weights_only=True)["step"] == 24
    record = read_record(layout.record("synthblur", "synthblur", "mimo_unet_tiny", False))
    table = (layout.tables / "synthblur.md").read_text()
    assert record.applicable and _row(table, "mimo_unet_tiny")[1] == mean_ci(record, "psnr", 2)


def _exp_run(root: Path, env: dict[str, str], *sets: str, ok: bool = True) -> subprocess.CompletedProcess:
    _run([*GIT, "add", "-A"], root, env)
    _run([*GIT, "commit", "-qm", "state", "--allow-empty"], root, env)
    args = ["dvc", "exp", "run", *[f"-S{o}" for o in (*SMALL_PARAMS, *TWO_MODELS, *sets)]]
    if ok:
        return _run(args, root, env)
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_exp_run_val_count_retrains_without_regenerating(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    layout = _layout(root)
    data = _mtimes(layout.dataset("synthblur"))
    done = _exp_run(root, env, "dataset.val_count=4")
    assert yaml.safe_load((root / "params.yaml").read_text())["dataset"]["val_count"] == 4
    ran = _ran(done.stdout)
    assert {"train@identity-synthblur", "train@nafnet_tiny-synthblur"} <= ran and "fetch@synthblur" not in ran
    assert _mtimes(layout.dataset("synthblur")) == data
    final = torch.load(layout.final_checkpoint("nafnet_tiny", "synthblur"), weights_only=True)
    assert final["config"]["dataset"]["val_count"] == 4


def test_exp_run_model_override_reaches_that_model_alone(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    # nafnet_tiny is width 8; 16 changes every layer's shape.
    done = _exp_run(root, env, "model=nafnet_tiny", "model.overrides.width=16")  # no `+`: the conf file lists width
    ran = _ran(done.stdout)
    assert {"train@nafnet_tiny-synthblur", "evaluate@nafnet_tiny-synthblur-synthblur"} <= ran
    assert not {"fetch@synthblur", "train@identity-synthblur", "evaluate@identity-synthblur-synthblur"} & ran
    layout = _layout(root)
    weights = torch.load(layout.final_checkpoint("nafnet_tiny", "synthblur"), weights_only=True)["model"]
    assert weights["intro.weight"].shape == (16, 3, 3, 3)
    assert read_record(layout.record("synthblur", "synthblur", "nafnet_tiny", False)).applicable


def test_exp_run_paths_data_moves_every_reader_and_writer(project: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = project
    scratch = tmp_path / "scratch"
    layout, moved = _layout(root), Layout(PathsConfig(data=str(scratch)), root=root)
    data = _mtimes(layout.dataset("synthblur"))
    # One model suffices to show every reader and writer moving (later -S values win).
    done = _exp_run(root, env, f"paths.data={scratch}", "pipeline.models=[identity]", "figures.model=identity")
    assert {"fetch@synthblur", "train@identity-synthblur", "evaluate@identity-synthblur-synthblur", "figures"} <= _ran(
        done.stdout
    )
    assert moved.identity_record("synthblur").is_file()
    assert len(list(moved.dataset("synthblur").rglob("*.png"))) == 22
    assert _mtimes(layout.dataset("synthblur")) == data  # the default place was neither read into nor written
    final = torch.load(layout.final_checkpoint("identity", "synthblur"), weights_only=True)
    assert final["config"]["paths"]["data"] == str(scratch)
    assert read_record(layout.record("synthblur", "synthblur", "identity", False)).provenance["dataset_sha256"] == (
        read_identity(moved.dataset("synthblur"), "synthblur").sha256
    )


def test_exp_run_unknown_key_fails_before_any_work(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    checkpoints = _mtimes(_layout(root).run_dir("nafnet_tiny", "synthblur").parent)
    done = _exp_run(root, env, "+dataset.val_cont=4", ok=False)
    assert done.returncode != 0
    assert "dataset.val_cont: unknown key" in done.stderr + done.stdout
    assert _ran(done.stdout) == {"configure"}
    assert _mtimes(_layout(root).run_dir("nafnet_tiny", "synthblur").parent) == checkpoints
