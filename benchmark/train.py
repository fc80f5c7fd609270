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

Data parallel (``torchrun --nproc_per_node=N -m benchmark.train ...``, see ``benchmark.distributed``):

- ``train.batch_size`` is the global batch. Each optimiser step takes the same global batch of sample indices as a
  single process would (``epoch_batches``), and rank ``r`` trains on its ``r``-th slice of ``batch_size / N``
  samples; crops and flips are keyed by the sample's global index, so the data of a step does not depend on ``N``.
  DistributedDataParallel averages the ranks' gradients, i.e. the gradient of the global batch mean, so the loss
  curve matches one process with the same global batch up to floating-point reduction order (tests/test_ddp.py).
- Rank 0 alone writes checkpoints, validates and logs to MLflow; the logged losses are the mean over all ranks.
- Each rank seeds its own torch generator (``seed + rank`` after the model is built) for stochastic layers
  (MIMO-UNet+'s dropout); ``last.pt`` keeps every rank's RNG state.
- The step counter, schedule and fingerprint do not involve ``N``: a run resumes under any number of processes (RNG
  states are restored when ``N`` is unchanged, and re-seeded per rank from ``(seed, rank, step)`` otherwise).
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

from benchmark import distributed, io
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
    is_main: bool = True  # False on the ranks > 0 of a torchrun job (which write nothing)


def select_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` = CUDA when available, else CPU; under torchrun (``local_rank`` given) rank r takes ``cuda:<r>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if local_rank is not None and name.startswith("cuda:"):
        raise ConfigError(
            f"train.device: {name} would put every rank of a multi-process job on one GPU; use device=cuda or auto "
            "(each rank then takes the GPU of its local rank)"
        )
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested but CUDA is not available; use device=cpu or auto")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
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


class LossStep(torch.nn.Module):
    """``forward(lq, gt) -> loss terms`` of a model: the unit that DistributedDataParallel and ``torch.compile`` wrap.

    DDP synchronises gradients only for computations that run through its own ``forward``, and a model's training
    path is ``forward_train`` + ``loss`` (not ``forward``), so both are folded into this module's forward.
    """

    def __init__(self, model: DeblurModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.model.loss(self.model.forward_train(lq, gt), gt))


def training_runner(
    model: DeblurModel, *, device: torch.device, channels_last: bool, compile: bool, data_parallel: bool
) -> torch.nn.Module:
    """What a training step calls: ``LossStep(model)``, wrapped in DistributedDataParallel for a multi-process job
    and in ``torch.compile`` when asked. With ``channels_last`` the model is converted in place (feed it
    channels-last inputs too). ``benchmark.bench`` times this same runner."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    runner: torch.nn.Module = LossStep(model)
    if data_parallel:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(runner) if compile else runner


def rank_slices(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s share of each global batch: the ``rank``-th of ``world_size`` equal contiguous slices."""
    out = []
    for batch in batches:
        per = len(batch) // world_size
        out.append(batch[rank * per : (rank + 1) * per])
    return out


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
    """Train ``cfg.model`` on ``cfg.dataset`` as ``cfg.train`` says; returns where the weights went.

    Under torchrun every rank calls this; see the module docstring for what each rank does.
    """
    tcfg: TrainConfig = build(TrainConfig, cfg.train, "train")
    protocol: Protocol = build(Protocol, cfg.dataset.protocol, "dataset.protocol")
    env = distributed.detect()
    if tcfg.batch_size % env.world_size:
        raise ConfigError(
            f"train.batch_size: the global batch {tcfg.batch_size} does not split evenly over {env.world_size} "
            f"processes; use a multiple of {env.world_size} or another --nproc_per_node"
        )
    device = select_device(tcfg.device, env.local_rank if env.distributed else None)
    distributed.init(env, device)
    try:
        return _train(cfg, tcfg, protocol, env, device)
    finally:
        distributed.shutdown()


def _train(
    cfg: DictConfig, tcfg: TrainConfig, protocol: Protocol, env: distributed.DistEnv, device: torch.device
) -> TrainResult:
    out_dir = run_dir(cfg)
    last_path, final_path = out_dir / "last.pt", out_dir / "final.pt"
    fp = fingerprint(cfg)
    if env.is_main:
        for stale in out_dir.glob(".*.tmp"):  # a temp file of a write that a killed run never finished
            stale.unlink()

    root = Path(cfg.dataset.root)
    pairs = find_pairs(root / "train")
    train_names, val_names = split_train_val(pairs, int(cfg.dataset.get("val_count", 0)))
    cache = Path(cfg.paths.cache) / cfg.dataset.name if tcfg.cache else None
    if not env.is_main:
        distributed.barrier()  # rank 0 decodes the cache first; the others then find every entry ready
    train_set = PairedDataset(
        root, "train", crop_size=tcfg.crop_size, augment=tcfg.augment, seed=cfg.seed, names=train_names, cache=cache
    )
    if env.is_main:
        distributed.barrier()
    val_set = (
        PairedDataset(root, "train", crop_size=None, augment="none", names=val_names)
        if val_names and env.is_main
        else None
    )
    steps_per_epoch = len(train_set) // tcfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size: {tcfg.batch_size} is larger than the {len(train_set)} training pairs of {root}"
        )
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = create_model(cfg.model.name, **model_overrides(cfg)).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if env.distributed:
        torch.manual_seed(cfg.seed + env.rank)

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
        "world_size": env.world_size,
    }
    with start_run(
        enabled=bool(cfg.tracking.enabled) and env.is_main,
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
            if env.is_main:
                io.save_torch(
                    final_path, {"model": model.state_dict(), "step": 0, "fingerprint": fp, "config": to_dict(cfg)}
                )
            return TrainResult(final_path, last_path, 0, 0, val, run.run_id, env.is_main)

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
            step = int(state["step"])
            # One RNG state per rank (a single dict in checkpoints written before data parallelism existed).
            rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
            if len(rng) == env.world_size:
                _set_rng_state(rng[env.rank])
            else:
                torch.manual_seed(cfg.seed * 1_000_003 + env.rank * 7_919 + step)
                if env.is_main:
                    print(
                        f"[train] {last_path} was written by {len(rng)} process(es), resuming with "
                        f"{env.world_size}: data order and weights continue exactly, dropout masks are re-seeded",
                        file=sys.stderr,
                    )
            if env.is_main:
                print(f"[train] resuming {last_path} at step {step}/{total_steps}", file=sys.stderr)
        resumed_from = step
        runner = training_runner(
            model, device=device, channels_last=tcfg.channels_last, compile=tcfg.compile, data_parallel=env.distributed
        )
        memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format

        def save_last(step: int) -> None:
            rng = distributed.all_gather_objects(_rng_state())  # a collective: every rank takes part
            if not env.is_main:
                return
            io.save_torch(
                last_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng,
                    "step": step,
                    "fingerprint": fp,
                    "world_size": env.world_size,
                    "config": to_dict(cfg),
                    "mlflow_run_id": run.run_id or "",
                },
            )

        model.train()
        val_psnr = None
        bar = tqdm(
            total=total_steps,
            initial=step,
            desc=f"train {cfg.model.name}",
            mininterval=2.0,
            file=sys.stderr,
            disable=not env.is_main,
        )
        t0, images = time.perf_counter(), 0
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            train_set.set_epoch(epoch)
            batches = epoch_batches(len(train_set), tcfg.batch_size, cfg.seed, epoch)[offset:]
            batches = rank_slices(batches, env.rank, env.world_size)
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
                lq = batch["lq"].to(device, non_blocking=True, memory_format=memory_format)
                gt = batch["gt"].to(device, non_blocking=True, memory_format=memory_format)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.bf16):
                    terms = runner(lq, gt)
                total = terms["total"]
                # The global batch's loss terms (mean over ranks; this rank's alone for one process). A non-finite
                # value on any rank is non-finite here, so every rank stops at the same step.
                names = list(terms)
                reduced = distributed.reduce_mean(torch.stack([terms[k].detach().float() for k in names]))
                logged = dict(zip(names, reduced.tolist(), strict=True))
                if not math.isfinite(logged["total"]):
                    values = ", ".join(f"{k}={v:.4g}" for k, v in logged.items())
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
                images += lq.shape[0] * env.world_size
                bar.update(1)
                if step % tcfg.log_every == 0 or step == total_steps:
                    elapsed = time.perf_counter() - t0
                    run.log_metrics(
                        {
                            **{f"loss/{k}": v for k, v in logged.items()},
                            "lr": scheduler.get_last_lr()[0],
                            "train/images_per_s": images / max(elapsed, 1e-9),
                        },
                        step=step,
                    )
                    bar.set_postfix(loss=f"{logged['total']:.4f}")
                if step % tcfg.val_every == 0 or step == total_steps:
                    if val_set is not None:  # rank 0 only; the other ranks wait at the barrier
                        val_psnr = validate(model, val_set, device, protocol)
                        run.log_metrics({"val/psnr": val_psnr}, step=step)
                    distributed.barrier()
                if step % tcfg.checkpoint_every == 0 or step == total_steps:
                    save_last(step)
        bar.close()
        if total_steps == resumed_from and val_set is not None:
            val_psnr = validate(model, val_set, device, protocol)
        model = model.to(memory_format=torch.contiguous_format)
        if env.is_main:
            io.save_torch(
                final_path, {"model": model.state_dict(), "step": step, "fingerprint": fp, "config": to_dict(cfg)}
            )
        distributed.barrier()  # no rank returns (and no caller reads final.pt) before it is written
        run.set_tags({"steps": step, "resumed_from_step": resumed_from, "world_size": env.world_size})
        return TrainResult(final_path, last_path, step, resumed_from, val_psnr, run.run_id, env.is_main)


KNOWN_ERRORS = (ConfigError, DatasetError, CheckpointError, NonFiniteLossError)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        result = run_training(resolve_recipe(apply_params_file(cfg)))
    except KNOWN_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not result.is_main:
        return
    val = f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
    print(f"[train] {result.steps} steps -> {result.final_path}{val}")


if __name__ == "__main__":
    main()
