"""Shared fixtures: a small real synthblur dataset, an isolated MLflow database, composed configs."""

from __future__ import annotations

import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

from pathlib import Path

import pytest
import torch

from benchmark.config import compose
from benchmark.synth import SynthParams, generate_synthblur

REPO = Path(__file__).resolve().parents[1]

# One thread: the test tensors are tiny (threading overhead dominates), and test subprocesses may share the cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test records into its own sqlite database, never into the repository's mlflow.db."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small synthblur dataset: 9 train pairs (3 photos x 3 crops) and 2 test pairs, 64x64 PNGs."""
    root = tmp_path_factory.mktemp("data") / "synthblur"
    params = SynthParams(
        train_photos=("brick", "camera", "rocket"),
        test_photos=("chelsea",),
        train_crops_per_photo=3,
        test_crops_per_photo=2,
        size=64,
        max_source_side=256,
    )
    generate_synthblur(root, params)
    return root


def small_overrides(root: Path, work: Path, *extra: str) -> list[str]:
    """Hydra overrides that point a run at a small dataset and a scratch folder, at CPU-test size."""
    return [
        f"dataset.root={root}",
        "dataset.val_count=3",
        f"paths.checkpoints={work / 'checkpoints'}",
        f"paths.results={work / 'results'}",
        "train.crop_size=32",
        "train.batch_size=2",
        "train.max_steps=6",
        "train.checkpoint_every=2",
        "train.val_every=3",
        "train.log_every=1",
        *extra,
    ]


@pytest.fixture
def small_cfg(tiny_synth: Path, tmp_path: Path):
    """Compose the real conf/ with small-run overrides; call with extra overrides."""

    def make(*extra: str):
        return compose(small_overrides(tiny_synth, tmp_path, *extra))

    return make
