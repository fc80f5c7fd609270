"""Shared fixtures: a small real synthblur dataset, an isolated MLflow database, composed configs."""

from __future__ import annotations

import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

import math
from pathlib import Path

import pytest
import torch

from benchmark.core.config import RunConfig, load_config
from benchmark.core.layout import Layout
from benchmark.core.sections import PathsConfig, SynthConfig
from benchmark.data.synth import generate_synthblur

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
    """A real, small synthblur dataset: 9 train pairs (3 photos x 3 crops) and 2 test pairs, 64x64 PNGs, with its
    identity record (``<tmp>/data/synthblur``: point ``paths.data`` at its parent)."""
    root = tmp_path_factory.mktemp("data") / "synthblur"
    params = SynthConfig(
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
    """Hydra overrides that point a run at a small dataset (``root``, named synthblur) and a scratch folder, at
    CPU-test size."""
    return [
        f"paths.data={root.parent}",
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


def work_layout(root: Path, work: Path) -> Layout:
    """The layout of a run made with ``small_overrides(root, work)``."""
    return Layout(
        PathsConfig(data=str(root.parent), checkpoints=str(work / "checkpoints"), results=str(work / "results"))
    )


@pytest.fixture
def small_cfg(tiny_synth: Path, tmp_path: Path):
    """Build the run configuration from the real conf/ with small-run overrides; call with extra overrides."""

    def make(*extra: str) -> RunConfig:
        return load_config(small_overrides(tiny_synth, tmp_path, *extra))

    return make


def make_record(
    model: str,
    scores: dict[str, list[float]],
    *,
    dataset: str = "synthblur",
    train_dataset: str | None = None,
    tlc: bool = False,
    weights: str = "pipeline",
    protocol=None,
    window=None,
    release: tuple | None = None,
    names: tuple[str, ...] | None = None,
    outputs=None,
):
    """An evaluation record as ``benchmark.evaluation.run`` writes one, from fixed per-image scores (images ``img0``,
    ``img1``, ..., or ``names``): means as ``Scores.means`` computes them, intervals by ``bootstrap_ci``; ``release`` =
    ``(protocol, scores)`` adds the scores under a release protocol; ``outputs``: an ``OutputsSource`` (a record of
    result images)."""
    from benchmark.core.sections import ScoringProtocol
    from benchmark.evaluation.records import EvalRecord
    from benchmark.scoring.loop import Scores
    from benchmark.scoring.stats import bootstrap_ci

    protocol = protocol or ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d")
    n = len(scores["psnr"])
    values = {k: tuple(float(x) for x in v) for k, v in scores.items()}
    names = names or tuple(f"img{i}" for i in range(n))
    assert len(names) == n
    return EvalRecord(
        model=model,
        row=f"{model}-Local" if tlc else model,
        dataset=dataset,
        train_dataset=train_dataset or dataset,
        weights=weights,
        tlc=tlc,
        checkpoint=None,
        checkpoint_sha256=None,
        protocol=protocol,
        protocol_text=protocol.describe(),
        tlc_window=window,
        names=names,
        means=Scores(names, values, 0.0).means,
        scores=values,
        intervals={k: bootstrap_ci(v) for k, v in values.items()},
        seconds=0.0,
        release=None if release is None else _protocol_scores(*release, names),
        outputs=outputs,
    )


def _protocol_scores(protocol, scores: dict[str, list[float]], names: tuple[str, ...]):
    from benchmark.evaluation.records import ProtocolScores
    from benchmark.scoring.loop import Scores
    from benchmark.scoring.stats import bootstrap_ci

    values = {k: tuple(float(x) for x in v) for k, v in scores.items()}
    assert all(len(v) == len(names) for v in values.values())
    return ProtocolScores(
        protocol=protocol,
        protocol_text=protocol.describe(),
        means=Scores(names, values, 0.0).means,
        scores=values,
        intervals={k: bootstrap_ci(v) for k, v in values.items()},
    )


def seeded_state(model: torch.nn.Module, seed: int = 1, *, weight_scale: float = 0.7) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights for ``model``'s keys, independent of torch's init code and of key order, as the
    parity tests' golden values were computed with: drawn from one generator seeded ``seed`` in sorted-key order;
    weights N(0, 1) x ``weight_scale`` / sqrt(fan), biases N(0, 1) x 0.1, where fan is the product of all dimensions
    but the first."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        value = torch.randn(shape, generator=gen, dtype=torch.float64)
        state[key] = value * (weight_scale / math.sqrt(math.prod(shape[1:]))) if len(shape) > 1 else 0.1 * value
    return state


def seeded_input(n: int, h: int, w: int, c: int = 3) -> torch.Tensor:
    """(n, c, h, w) float64 in [0, 1): ``torch.rand`` from a generator seeded 0 (the parity tests' inputs)."""
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def check_summary(out: torch.Tensor, golden: dict, atol: float = 1e-10) -> None:
    """``out`` against a golden summary computed with a release's code, in float64, each within ``atol``: top_left =
    out[0, :3, :2, :3], bottom_right = out[-1, :3, -2:, -3:] (flattened), sums, and ramp_sum = sum(out * ramp) with
    ramp = arange(H * W).reshape(H, W) / (H * W)."""
    out = out.double()
    h, w = out.shape[-2:]
    ramp = torch.arange(h * w, dtype=torch.float64).reshape(h, w) / (h * w)
    got = {
        "top_left": out[0, :3, :2, :3].flatten(),
        "bottom_right": out[-1, :3, -2:, -3:].flatten(),
        "sum": out.sum(),
        "abs_sum": out.abs().sum(),
        "ramp_sum": (out * ramp).sum(),
    }
    for key, value in got.items():
        expected = torch.tensor(golden[key], dtype=torch.float64)
        assert torch.allclose(value, expected, rtol=0, atol=atol), key
