"""Training: ``python -m benchmark.train model=<name> dataset=<name> [key=value ...]``.

The loop is step-based and deterministic on the CPU: the sample order of epoch ``e`` is a permutation seeded by
``(seed, e)``, each item's crop and flips come from ``(seed, e, index)`` (see ``benchmark.data``), and the torch RNG
state (dropout) travels in the checkpoint. A run resumed from ``last.pt`` therefore reaches the same weights as an
uninterrupted one (tests/test_train.py kills a real run to check it).

Checkpoints (``checkpoints/<model>-<dataset>/``, written atomically):
- ``last.pt``: everything needed to resume: model, optimizer, scheduler, RNG states, step, config fingerprint, the
  MLflow run id; written every ``train.checkpoint_every`` steps and at the end.
- ``final.pt``: ``{"model": state_dict, ...}`` after the last step; what evaluation loads.

A non-finite loss stops the run before the optimiser step with ``NonFiniteLossError``; the last good ``last.pt`` stays.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from benchmark import io
from benchmark.config import (
    EXECUTION_TRAIN_KEYS,
    ConfigError,
    OptimizerConfig,
    Protocol,
    SchedulerConfig,
    TrainConfig,
    apply_params_file,
    build,
    model_overrides,
    resolve_recipe,
    to_dict,
)
from benchmark.data import DatasetError, PairedDataset, dataset_fingerprint, find_pairs, split_train_val
from benchmark.tracking import start_run
from models import CheckpointError, DeblurModel, create_model

CHECKPOINT_FORMAT = "msfs-bench/train-state/1"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before the optimiser step."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    final_path: Path
    last_path: Path
    steps: int
    resumed_from: int
    val_psnr: float | None
    mlflow_run_id: str | None


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested but CUDA is not available; use device=cpu or auto")
    return torch.device(name)


def run_dir(cfg: DictConfig, dataset: str | None = None) -> Path:
    """``checkpoints/<model>-<dataset>``: the folder of one (model, training dataset) pair."""
    return Path(cfg.paths.checkpoints) / f"{cfg.model.name}-{dataset or cfg.dataset.name}"


def fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that determines the trained weights; a checkpoint resumes only under the same hash."""
    plain = to_dict(cfg)
    train = {k: v for k, v in plain["train"].items() if k not in EXECUTION_TRAIN_KEYS}
    dataset = {k: v for k, v in plain["dataset"].items() if k not in ("protocol",)}
    payload = {"model": plain["model"], "dataset": dataset, "train": train, "seed": plain["seed"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return cls(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: SchedulerConfig, *, base_lr: float, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps (a pure function, so resuming is exact)."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        # Linear warm-up to the base rate (MPRNet's GradualWarmupScheduler, multiplier 1; per step, not per epoch).
        return (step + 1) / warmup
    if cfg.name == "step":
        return cfg.gamma ** ((step - warmup) // (cfg.step_epochs * steps_per_epoch))
    if cfg.name == "cosine":
        span = max(total_steps - warmup, 1)
        t = min(step - warmup, span) / span
        floor = cfg.min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a seeded permutation of ``range(n)``, incomplete last batch dropped."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_train_state(path: Path) -> dict[str, Any]:
    """Read ``last.pt`` with the safe loader; a corrupt file is reported, never silently ignored."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"resume checkpoint {path} is unreadable ({err}); delete it to start over (train.resume=false)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a msfs-bench training checkpoint; delete it or set train.resume=false")
    return state


@torch.no_grad()
def validate(model: DeblurModel, dataset: PairedDataset, device: torch.device, protocol: Protocol) -> float:
    """Mean PSNR over the validation pairs (full images), scored with the dataset's protocol."""
    from benchmark.evaluate import evaluate  # evaluate imports this module (select_device, run_dir)

    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)
    result = evaluate(model, loader, protocol, device=device, progress=False)
    model.train(was_training)
    return result.means["psnr"]


def run_training(cfg: DictConfig) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` as ``cfg.train`` says; returns where the weights went."""
    tcfg: TrainConfig = build(TrainConfig, cfg.train, "train")
    protocol: Protocol = build(Protocol, cfg.dataset.protocol, "dataset.protocol")
    device = select_device(tcfg.device)
    out_dir = run_dir(cfg)
    last_path, final_path = out_dir / "last.pt", out_dir / "final.pt"
    fp = fingerprint(cfg)
    for stale in out_dir.glob(".*.tmp"):  # a temp file of a write that a killed run never finished
        stale.unlink()

    root = Path(cfg.dataset.root)
    pairs = find_pairs(root / "train")
    train_names, val_names = split_train_val(pairs, int(cfg.dataset.get("val_count", 0)))
    train_set = PairedDataset(
        root, "train", crop_size=tcfg.crop_size, augment=tcfg.augment, seed=cfg.seed, names=train_names
    )
    val_set = PairedDataset(root, "train", crop_size=None, augment="none", names=val_names) if val_names else None
    steps_per_epoch = len(train_set) // tcfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size: {tcfg.batch_size} is larger than the {len(train_set)} training pairs of {root}"
        )
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.name, **model_overrides(cfg)).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]

    state = None
    if tcfg.resume is not False and last_path.exists():
        state = load_train_state(last_path)
        if state["fingerprint"] != fp:
            if tcfg.resume is True:
                raise CheckpointError(
                    f"train.resume=true but {last_path} was written under another config (fingerprint "
                    f"{state['fingerprint']} != {fp}); set train.resume=auto to start over"
                )
            print(f"[train] {last_path} belongs to another config; starting over", file=sys.stderr)
            state = None
    elif tcfg.resume is True:
        raise CheckpointError(f"train.resume=true but there is no checkpoint at {last_path}")

    tags = {
        "kind": "train",
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "profile": tcfg.profile,
        "tlc": "false",
        "dataset_hash": dataset_fingerprint(root),
        "fingerprint": fp,
        "parameters": model.num_parameters,
    }
    with start_run(
        enabled=bool(cfg.tracking.enabled),
        experiment=cfg.tracking.experiment,
        run_name=f"train/{cfg.model.name}-{cfg.dataset.name}",
        tags=tags,
        uri=cfg.tracking.uri,
        resume_run_id=state.get("mlflow_run_id") if state else None,
    ) as run:
        run.log_params(to_dict(cfg))
        run.log_dict(to_dict(cfg), "config/resolved.json")

        if not trainable:
            # Nothing to optimise (identity): record the run and an empty checkpoint so the pipeline stays uniform.
            val = validate(model, val_set, device, protocol) if val_set else None
            if val is not None:
                run.log_metrics({"val/psnr": val}, step=0)
            io.save_torch(
                final_path, {"model": model.state_dict(), "step": 0, "fingerprint": fp, "config": to_dict(cfg)}
            )
            return TrainResult(final_path, last_path, 0, 0, val, run.run_id)

        optimizer = build_optimizer(trainable, tcfg.optimizer)
        base_lr = tcfg.optimizer.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: lr_factor(
                s, tcfg.scheduler, base_lr=base_lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch
            ),
        )
        step = 0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            step = int(state["step"])
            print(f"[train] resuming {last_path} at step {step}/{total_steps}", file=sys.stderr)
        resumed_from = step
        if tcfg.channels_last:
            model = model.to(memory_format=torch.channels_last)

        def save_last(step: int) -> None:
            io.save_torch(
                last_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                    "step": step,
                    "fingerprint": fp,
                    "config": to_dict(cfg),
                    "mlflow_run_id": run.run_id or "",
                },
            )

        model.train()
        val_psnr = None
        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.model.name}", mininterval=2.0, file=sys.stderr)
        t0, images = time.perf_counter(), 0
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            train_set.set_epoch(epoch)
            batches = epoch_batches(len(train_set), tcfg.batch_size, cfg.seed, epoch)[offset:]
            loader = torch.utils.data.DataLoader(
                train_set,
                batch_sampler=batches,
                num_workers=tcfg.num_workers,
                pin_memory=device.type == "cuda",
                # A private generator: creating a loader iterator must not consume the global RNG (resume exactness).
                generator=torch.Generator().manual_seed(cfg.seed + epoch),
            )
            for batch in loader:
                if step >= total_steps:
                    break
                lq = batch["lq"].to(device, non_blocking=True)
                gt = batch["gt"].to(device, non_blocking=True)
                if tcfg.channels_last:
                    lq, gt = (
                        lq.contiguous(memory_format=torch.channels_last),
                        gt.contiguous(memory_format=torch.channels_last),
                    )
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.bf16):
                    out = model.forward_train(lq, gt)
                    terms = model.loss(out, gt)
                total = terms["total"]
                if not torch.isfinite(total):
                    values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                    raise NonFiniteLossError(
                        f"{cfg.model.name}-{cfg.dataset.name}: non-finite loss at step {step + 1} ({values}). "
                        f"Nothing was written after the last good checkpoint "
                        f"({last_path if last_path.exists() else 'none yet'}). Lower train.optimizer.lr or check "
                        f"the data, then run again (train.resume=auto continues from that checkpoint)."
                    )
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                images += lq.shape[0]
                bar.update(1)
                if step % tcfg.log_every == 0 or step == total_steps:
                    elapsed = time.perf_counter() - t0
                    run.log_metrics(
                        {
                            **{f"loss/{k}": float(v.detach()) for k, v in terms.items()},
                            "lr": scheduler.get_last_lr()[0],
                            "train/images_per_s": images / max(elapsed, 1e-9),
                        },
                        step=step,
                    )
                    bar.set_postfix(loss=f"{float(total.detach()):.4f}")
                if val_set is not None and (step % tcfg.val_every == 0 or step == total_steps):
                    val_psnr = validate(model, val_set, device, protocol)
                    run.log_metrics({"val/psnr": val_psnr}, step=step)
                if step % tcfg.checkpoint_every == 0 or step == total_steps:
                    save_last(step)
        bar.close()
        if total_steps == resumed_from and val_set is not None:
            val_psnr = validate(model, val_set, device, protocol)
        model = model.to(memory_format=torch.contiguous_format)
        io.save_torch(
            final_path, {"model": model.state_dict(), "step": step, "fingerprint": fp, "config": to_dict(cfg)}
        )
        run.set_tags({"steps": step, "resumed_from_step": resumed_from})
        return TrainResult(final_path, last_path, step, resumed_from, val_psnr, run.run_id)


KNOWN_ERRORS = (ConfigError, DatasetError, CheckpointError, NonFiniteLossError)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        result = run_training(resolve_recipe(apply_params_file(cfg)))
    except KNOWN_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    val = f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
    print(f"[train] {result.steps} steps -> {result.final_path}{val}")


if __name__ == "__main__":
    main()
