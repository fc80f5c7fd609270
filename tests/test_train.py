"""Training: atomic checkpoints, resume after a real kill, NaN guard, MLflow records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from benchmark.core import atomic
from benchmark.core.errors import ConfigError
from benchmark.core.sections import SchedulerConfig
from benchmark.data.dataset import PairedDataset
from benchmark.data.identity import read_identity
from benchmark.training.loop import fingerprint, run_training
from benchmark.training.schedule import epoch_batches, lr_factor
from benchmark.training.step import NonFiniteLossError
from tests.conftest import REPO, small_overrides, work_layout


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    atomic.save_torch(target, {"step": 1})

    def dies_midway(f) -> None:
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # as if the process were interrupted during the write

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(target, dies_midway)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left behind


def test_epoch_batches_are_a_seeded_partition() -> None:
    a = epoch_batches(10, 3, seed=0, epoch=0)
    assert a == epoch_batches(10, 3, seed=0, epoch=0)
    assert a != epoch_batches(10, 3, seed=0, epoch=1)
    assert len(a) == 3 and all(len(b) == 3 for b in a)
    assert len({i for b in a for i in b}) == 9


def test_lr_schedules_known_values() -> None:
    step = SchedulerConfig(name="step", step_epochs=2, gamma=0.5)
    # 10 steps per epoch: halved after 20 and 40 steps (the paper: halved every 500 epochs).
    assert [lr_factor(s, step, base_lr=1e-4, total_steps=60, steps_per_epoch=10) for s in (0, 19, 20, 40)] == [
        1.0,
        1.0,
        0.5,
        0.25,
    ]
    cos = SchedulerConfig(name="cosine", min_lr=1e-5)
    assert lr_factor(0, cos, base_lr=1e-3, total_steps=100, steps_per_epoch=1) == pytest.approx(1.0)
    assert lr_factor(50, cos, base_lr=1e-3, total_steps=100, steps_per_epoch=1) == pytest.approx(0.505)
    assert lr_factor(100, cos, base_lr=1e-3, total_steps=100, steps_per_epoch=1) == pytest.approx(0.01)
    # SRN's tf.train.polynomial_decay(1e-4, step, max_steps, end_learning_rate=0, power=0.3).
    poly = SchedulerConfig(name="poly", power=0.3)
    factors = [lr_factor(s, poly, base_lr=1e-4, total_steps=100, steps_per_epoch=1) for s in (0, 50, 99, 100, 150)]
    assert factors == pytest.approx([1.0, 0.5**0.3, 0.01**0.3, 0.0, 0.0])
    with pytest.raises(ConfigError, match="power"):
        SchedulerConfig(name="poly", power=0.0).check("train.scheduler")


def test_short_run_writes_checkpoints_and_mlflow_run(small_cfg) -> None:
    cfg = small_cfg("model=mimo_unet_tiny")
    result = run_training(cfg)
    assert result.steps == 6 and result.resumed_from == 0
    last = torch.load(result.last_path, weights_only=True)
    data_hash = read_identity(cfg.layout.dataset("synthblur"), "synthblur").sha256
    assert last["step"] == 6 and last["fingerprint"] == fingerprint(cfg, data_hash)
    assert set(last) >= {"model", "optimizer", "scheduler", "rng", "step", "config"}
    assert _weights(result.final_path).keys() == last["model"].keys()
    assert result.val_psnr is not None and 5 < result.val_psnr < 60
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "mimo_unet_tiny" and run.data.tags["kind"] == "train"
    assert run.data.tags["dataset"] == "synthblur" and len(run.data.tags["dataset_hash"]) >= 16
    assert run.data.params["train.batch_size"] == "2"
    history = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "loss/total")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    # The same curves as DVC plot files (benchmark.training.curves), to 6 significant digits.
    curves = cfg.layout.train_curves("mimo_unet_tiny", "synthblur")
    loss = pd.read_csv(curves / "loss.csv")
    assert list(loss.columns) == ["step", "total", "content", "fft"]  # MIMO-UNet's own loss terms
    assert loss["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert loss["total"].tolist() == pytest.approx([m.value for m in history], rel=1e-5)
    lr = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "lr")
    assert pd.read_csv(curves / "lr.csv")["lr"].tolist() == pytest.approx([m.value for m in lr], rel=1e-5)
    val = pd.read_csv(curves / "val.csv")
    assert val["step"].tolist() == [3, 6] and val["psnr"].iloc[-1] == pytest.approx(result.val_psnr, rel=1e-5)
    # Running again with the same config resumes at the end: nothing retrained, same weights.
    again = run_training(cfg)
    assert again.resumed_from == 6
    assert all(
        torch.equal(a, b)
        for a, b in zip(_weights(result.final_path).values(), _weights(again.final_path).values(), strict=True)
    )


def test_identity_has_nothing_to_train(small_cfg) -> None:
    result = run_training(small_cfg("model=identity"))
    assert result.steps == 0 and _weights(result.final_path) == {}


def test_nan_loss_stops_and_keeps_last_good_checkpoint(small_cfg) -> None:
    # An absurd learning rate overflows the weights after the first update, so step 2 has a non-finite loss.
    cfg = small_cfg(
        "model=mimo_unet_tiny", "train.optimizer.lr=1e30", "train.checkpoint_every=1", "train.val_every=100"
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step \d+.*last good checkpoint"):
        run_training(cfg)
    last = cfg.layout.last_checkpoint("mimo_unet_tiny", "synthblur")
    state = torch.load(last, weights_only=True)
    assert state["step"] >= 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (last.parent / "final.pt").exists()


def _train_cmd(root: Path, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmark.train",
        "model=mimo_unet_tiny",
        *small_overrides(
            root,
            work,
            "train.crop_size=64",
            "train.batch_size=4",
            "train.max_steps=200",
            "train.checkpoint_every=4",
            "train.val_every=1000",
        ),
    ]


@pytest.mark.slow
def test_resume_after_kill_reaches_the_same_weights(tiny_synth: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(
        _train_cmd(tiny_synth, tmp_path / "ref"), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    work = tmp_path / "killed"
    last = work_layout(tiny_synth, work).last_checkpoint("mimo_unet_tiny", "synthblur")
    proc = subprocess.Popen(
        _train_cmd(tiny_synth, work), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_at = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists():
            step = torch.load(last, weights_only=True)["step"]
            if 8 <= step < 180:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run finished before it could be killed; make it longer"
    assert not (last.parent / "final.pt").exists()

    resumed = subprocess.run(
        _train_cmd(tiny_synth, work), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    a = _weights(work_layout(tiny_synth, tmp_path / "ref").final_checkpoint("mimo_unet_tiny", "synthblur"))
    b = _weights(last.parent / "final.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    # The curves end where last.pt did and the resumed run continues them: the same files as the uninterrupted run's.
    ref_curves = work_layout(tiny_synth, tmp_path / "ref").train_curves("mimo_unet_tiny", "synthblur")
    curves = work_layout(tiny_synth, work).train_curves("mimo_unet_tiny", "synthblur")
    for name in ("loss.csv", "lr.csv", "val.csv"):
        assert (curves / name).read_text() == (ref_curves / name).read_text(), name
    assert len((curves / "loss.csv").read_text().splitlines()) == 201


def test_resume_with_changed_logging_settings_keeps_the_mlflow_run(small_cfg) -> None:
    # log_every and checkpoint_every do not change the weights, so a run resumes under new values of them; MLflow
    # refuses to change a logged param, so the new values must be recorded without failing the resumed run.
    first = run_training(small_cfg("model=mimo_unet_tiny", "train.max_steps=4"))
    resumed = run_training(small_cfg("model=mimo_unet_tiny", "train.max_steps=4", "train.log_every=2"))
    assert resumed.resumed_from == 4 and resumed.mlflow_run_id == first.mlflow_run_id
    run = mlflow.get_run(resumed.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.log_every"] == "1"  # the value the run started with
    assert run.data.tags["resumed_param.train.log_every"] == "2"


def test_warmup_then_cosine_known_values() -> None:
    # MPRNet's recipe: linear warm-up over 3 epochs, then cosine over the remaining steps.
    sched = SchedulerConfig(name="cosine", min_lr=0.0, warmup_epochs=3)
    f = [lr_factor(s, sched, base_lr=2e-4, total_steps=130, steps_per_epoch=10) for s in (0, 14, 29, 30, 80, 130)]
    assert f == pytest.approx([1 / 30, 15 / 30, 1.0, 1.0, 0.5, 0.0])
    # Warm-up before a step schedule delays its first halving by the warm-up length.
    step = SchedulerConfig(name="step", step_epochs=2, gamma=0.5, warmup_epochs=1)
    assert [lr_factor(s, step, base_lr=1e-4, total_steps=60, steps_per_epoch=10) for s in (9, 10, 29, 30)] == [
        1.0,
        1.0,
        1.0,
        0.5,
    ]


def test_decode_cache_trains_to_identical_weights(small_cfg, tmp_path: Path) -> None:
    plain = run_training(small_cfg("model=nafnet_tiny", "train.max_steps=3"))
    cached_cfg = small_cfg(
        "model=nafnet_tiny",
        "train.max_steps=3",
        "train.cache=true",
        f"paths.cache={tmp_path / 'decoded'}",
        f"paths.checkpoints={tmp_path / 'cached'}",
    )
    assert fingerprint(cached_cfg, "x") == fingerprint(small_cfg("model=nafnet_tiny", "train.max_steps=3"), "x")
    cached = run_training(cached_cfg)
    assert sorted(p.name for p in (tmp_path / "decoded" / "synthblur" / "train" / "blur").glob("*.npy")) == [
        f"{name}.npy"
        for name in sorted(
            PairedDataset(cached_cfg.layout.dataset("synthblur"), "train", crop_size=None, augment="none").names
        )[:6]
    ]
    a, b = _weights(plain.final_path), _weights(cached.final_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_channels_last_run_on_cpu(small_cfg) -> None:
    cfg = small_cfg("model=msfsnet_tiny", "train.max_steps=2", "train.bf16=true", "train.channels_last=true")
    result = run_training(cfg)
    history = mlflow.MlflowClient().get_metric_history(result.mlflow_run_id, "loss/total")
    assert len(history) == 2 and all(0 < m.value < 10 for m in history)
    weights = _weights(result.final_path)
    # final.pt holds contiguous float32 tensors whatever the training memory format and autocast dtype.
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in weights.values() if v.is_floating_point())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_channels_last_compile_on_cuda(small_cfg) -> None:
    cfg = small_cfg(
        "model=msfsnet_tiny",
        "train.max_steps=3",
        "train.device=cuda",
        "train.bf16=true",
        "train.channels_last=true",
        "train.compile=true",
    )
    eager = run_training(small_cfg("model=msfsnet_tiny", "train.max_steps=3", "train.device=cuda"))
    fast = run_training(cfg)
    client = mlflow.MlflowClient()
    a = [m.value for m in client.get_metric_history(eager.mlflow_run_id, "loss/total")]
    b = [m.value for m in client.get_metric_history(fast.mlflow_run_id, "loss/total")]
    # bf16 rounds activations to 8 mantissa bits: the first loss (same weights, same batch) agrees to about 1%.
    assert b[0] == pytest.approx(a[0], rel=2e-2)


def test_a_dataset_changed_since_it_was_built_is_refused_before_training(tiny_synth: Path, tmp_path: Path) -> None:
    import os
    import shutil

    from benchmark.core.config import load_config
    from benchmark.data.errors import DatasetError

    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data / "synthblur")
    touched = data / "synthblur" / "train" / "blur" / "brick_0.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    cfg = load_config([*small_overrides(data / "synthblur", tmp_path / "work"), "model=mimo_unet_tiny"])
    with pytest.raises(DatasetError, match=rf"{touched} changed .*rehash=true"):
        run_training(cfg)
    assert not cfg.layout.run_dir("mimo_unet_tiny", "synthblur").exists()
