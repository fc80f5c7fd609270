"""The training run: ``run_training(run)``, called by ``python -m benchmark.train`` on every rank.

The loop is step-based and deterministic on the CPU: the sample order of epoch ``e`` is a permutation seeded by
``(seed, e)``, each item's crop and flips come from ``(seed, e, index)`` (``benchmark.data.augment``), and the torch RNG
state (dropout) travels in the checkpoint. A run resumed from ``last.pt`` therefore reaches the same weights as an
uninterrupted one (tests/test_train.py kills a real run to check it). A non-finite loss stops the run before the
optimiser step with ``NonFiniteLossError``; the last good ``last.pt`` stays.

Data parallel (``torchrun --nproc_per_node=N -m benchmark.train ...``, see ``benchmark.training.distributed``):

- ``train.batch_size`` is the global batch. Each optimiser step takes the same global batch of sample indices as a
  single process would (``epoch_batches``), and rank ``r`` trains on its ``r``-th slice of ``batch_size / N``
  samples; crops and flips are keyed by the sample's global index, so the data of a step does not depend on ``N``.
  DistributedDataParallel averages the ranks' gradients, i.e. the gradient of the global batch mean, so the loss
  curve matches one process with the same global batch up to floating-point reduction order (tests/test_ddp.py).
- Rank 0 alone writes checkpoints, validates and logs to MLflow; the logged losses are the mean over all ranks.
- Each rank seeds its own torch generator (``seed + rank`` after the model is built) for stochastic layers
  (MIMO-UNet+'s dropout); ``last.pt`` keeps every rank's RNG state (``benchmark.training.resume``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmark.core import atomic
from benchmark.core.config import RunConfig
from benchmark.core.device import select_device
from benchmark.core.errors import ConfigError
from benchmark.core.hashing import sha256_json
from benchmark.core.stages import train_inputs
from benchmark.core.tracking import TrackedRun, start_run
from benchmark.data.cache import build_cache
from benchmark.data.dataset import PairedDataset
from benchmark.data.identity import read_identity
from benchmark.data.pairs import find_pairs, split_train_val
from benchmark.training import distributed
from benchmark.training.checkpoints import rng_state, save_final, save_last
from benchmark.training.curves import TrainingCurves
from benchmark.training.resume import restore, resume_state
from benchmark.training.schedule import build_optimizer, epoch_batches, lr_factor, rank_slices
from benchmark.training.step import CriticUpdate, NonFiniteLossError, TrainStep, training_runner
from benchmark.training.validation import validation_psnr
from benchmark.weights.resolve import build_model
from models import DeblurModel


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


@dataclass(frozen=True)
class TrainData:
    """The training and validation sets of a run and the length of the run in steps."""

    train_set: PairedDataset
    val_set: PairedDataset | None  # rank 0 only, and only with a validation split
    steps_per_epoch: int
    total_steps: int


def fingerprint(run: RunConfig, dataset_sha256: str) -> str:
    """Hash of everything that determines the trained weights; a checkpoint resumes only under the same hash."""
    return sha256_json({**train_inputs(run), "dataset_sha256": dataset_sha256})[:16]


def run_training(run: RunConfig) -> TrainResult:
    """Train ``run.model`` on ``run.dataset`` as ``run.train`` says; returns where the weights went.

    Under torchrun every rank calls this; see the module docstring for what each rank does.
    """
    env = distributed.detect()
    if run.train.batch_size % env.world_size:
        raise ConfigError(
            f"the global batch {run.train.batch_size} does not split evenly over {env.world_size} processes; use a "
            f"multiple of {env.world_size} or another --nproc_per_node",
            key="train.batch_size",
        )
    device = select_device(run.train.device, env.local_rank if env.distributed else None)
    distributed.init(env, device)
    try:
        return _train(run, env, device)
    finally:
        distributed.shutdown()


def open_data(run: RunConfig, env: distributed.DistEnv) -> TrainData:
    """The training split (minus the validation hold-out), its decode cache when ``train.cache``, and the run length."""
    root = run.layout.dataset(run.dataset.name)
    pairs = find_pairs(root / "train")
    train_names, val_names = split_train_val(pairs, run.dataset.val_count)
    cache = None
    if run.train.cache:
        if not env.is_main:
            distributed.barrier()  # rank 0 decodes the cache first; the others then find every entry ready
        cache = build_cache(
            [p for p in pairs if p.name in set(train_names)], run.layout.cache(run.dataset.name), "train"
        )
        if env.is_main:
            distributed.barrier()
    tcfg = run.train
    train_set = PairedDataset(
        root, "train", crop_size=tcfg.crop_size, augment=tcfg.augment, seed=run.seed, names=train_names, cache=cache
    )
    val_set = None
    if val_names and env.is_main:
        val_set = PairedDataset(root, "train", crop_size=None, augment="none", names=val_names)
    steps_per_epoch = len(train_set) // tcfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{tcfg.batch_size} is larger than the {len(train_set)} training pairs of {root}", key="train.batch_size"
        )
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    return TrainData(train_set, val_set, steps_per_epoch, total_steps)


@dataclass
class _Session:
    """What the parts of one training run share: the config, model, data, device, ranks, MLflow run and fingerprint."""

    run: RunConfig
    model: DeblurModel
    data: TrainData
    device: torch.device
    env: distributed.DistEnv
    fp: str
    tracked: TrackedRun | None = None
    curves: TrainingCurves | None = None  # rank 0 only: the DVC plot files (benchmark.training.curves)

    @property
    def name(self) -> str:
        return f"{self.run.model.name}-{self.run.dataset.name}"

    @property
    def last_path(self) -> Path:
        return self.run.layout.last_checkpoint(self.run.model.name, self.run.dataset.name)

    @property
    def final_path(self) -> Path:
        return self.run.layout.final_checkpoint(self.run.model.name, self.run.dataset.name)

    @property
    def run_id(self) -> str | None:
        return self.tracked.run_id if self.tracked else None

    def held_out_psnr(self) -> float | None:
        """Validation PSNR on rank 0 (``None`` elsewhere and without a validation split)."""
        if self.data.val_set is None:
            return None
        return validation_psnr(self.model, self.data.val_set, self.device, self.run.dataset.protocol)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.tracked is not None:
            self.tracked.log_metrics(metrics, step=step)

    def open_curves(self, step: int) -> None:
        """Start (``step`` 0) or continue the run's curve files, on rank 0."""
        if self.env.is_main:
            folder = self.run.layout.train_curves(self.run.model.name, self.run.dataset.name)
            self.curves = TrainingCurves.resume(folder, step)

    def log_val(self, psnr: float, step: int) -> None:
        self.log({"val/psnr": psnr}, step)
        if self.curves is not None:
            self.curves.add_val(step, psnr)

    def save_last(self, step: int, optimizer: Any, scheduler: Any, critic: CriticUpdate | None) -> None:
        rng = distributed.all_gather_objects(rng_state())  # a collective: every rank takes part
        if self.env.is_main:
            save_last(
                self.last_path,
                model=self.model,
                optimizer=optimizer,
                scheduler=scheduler,
                critic=critic,
                rng=rng,
                step=step,
                fingerprint=self.fp,
                config=self.run.to_dict(),
                mlflow_run_id=self.run_id,
            )
            if self.curves is not None:  # the curves on disk end where a resumed run starts again
                self.curves.write()

    def save_final(self, step: int) -> None:
        if self.env.is_main:
            save_final(self.final_path, model=self.model, step=step, fingerprint=self.fp, config=self.run.to_dict())

    def result(self, steps: int, resumed_from: int, val_psnr: float | None) -> TrainResult:
        return TrainResult(
            self.final_path, self.last_path, steps, resumed_from, val_psnr, self.run_id, self.env.is_main
        )

    def non_finite(self, err: NonFiniteLossError, step: int) -> NonFiniteLossError:
        values = ", ".join(f"{k}={v:.4g}" for k, v in err.terms.items())
        last = self.last_path if self.last_path.exists() else "none yet"
        return NonFiniteLossError(
            f"{self.name}: non-finite loss at step {step + 1} ({values}). Nothing was written after the last good "
            f"checkpoint ({last}). Lower train.optimizer.lr or check the data, then run again (train.resume=auto "
            "continues from that checkpoint).",
            err.terms,
        )


def _train(run: RunConfig, env: distributed.DistEnv, device: torch.device) -> TrainResult:
    last_path = run.layout.last_checkpoint(run.model.name, run.dataset.name)
    if env.is_main:
        atomic.remove_stale_temps(last_path.parent)  # of a write that a killed run never finished
    identity = read_identity(run.layout.dataset(run.dataset.name), run.dataset.name)
    fp = fingerprint(run, identity.sha256)
    data = open_data(run, env)

    torch.manual_seed(run.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(run.model).to(device)
    if env.distributed:
        torch.manual_seed(run.seed + env.rank)
    state = resume_state(last_path, fp, run.train.resume)
    tags = {
        "kind": "train",
        "model": run.model.name,
        "dataset": run.dataset.name,
        "profile": run.train.profile,
        "tlc": "false",
        "dataset_hash": identity.sha256,
        "fingerprint": fp,
        "parameters": model.num_parameters,
        "world_size": env.world_size,
    }
    session = _Session(run, model, data, device, env, fp)
    with start_run(
        run.tracking,
        run_name=f"train/{session.name}",
        tags=tags,
        resume_run_id=state.get("mlflow_run_id") if state else None,
        active=env.is_main,
    ) as session.tracked:
        session.tracked.log_params(run.to_dict())
        session.tracked.log_dict(run.to_dict(), "config/resolved.json")
        if not any(p.requires_grad for p in model.parameters()):
            # Nothing to optimise (identity): record the run and an empty checkpoint, so the pipeline stays uniform.
            val = session.held_out_psnr()
            session.open_curves(0)
            if val is not None:
                session.log_val(val, step=0)
            if session.curves is not None:
                session.curves.write()
            session.save_final(0)
            return session.result(0, 0, val)
        return _fit(session, state)


def _fit(session: _Session, state: dict[str, Any] | None) -> TrainResult:
    """Optimise from the start or from ``state``; then write ``final.pt``."""
    run, model, data, env, tcfg = session.run, session.model, session.data, session.env, session.run.train
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], tcfg.optimizer)
    scheduler = _schedule(optimizer, session)
    critic = _critic(model, session)
    step = 0
    if state is not None:
        step = restore(
            state,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            env=env,
            seed=run.seed,
            path=session.last_path,
            critic=critic,
        )
        if env.is_main:
            print(f"[train] resuming {session.last_path} at step {step}/{data.total_steps}", file=sys.stderr)
    resumed_from = step
    session.open_curves(step)
    runner = training_runner(
        model,
        device=session.device,
        channels_last=tcfg.channels_last,
        compile=tcfg.compile,
        data_parallel=env.distributed,
        critic=critic,
    )
    train_step = TrainStep(
        runner,
        optimizer,
        scheduler,
        device=session.device,
        bf16=tcfg.bf16,
        channels_last=tcfg.channels_last,
        critic=critic,
    )
    model.train()
    val_psnr = _epochs(session, train_step, step)
    if data.total_steps == resumed_from:
        val_psnr = session.held_out_psnr()
    model.to(memory_format=torch.contiguous_format)
    session.save_final(data.total_steps)
    distributed.barrier()  # no rank returns (and no caller reads final.pt) before it is written
    assert session.tracked is not None
    session.tracked.set_tags(
        {"steps": data.total_steps, "resumed_from_step": resumed_from, "world_size": env.world_size}
    )
    return session.result(data.total_steps, resumed_from, val_psnr)


def _schedule(optimizer: torch.optim.Optimizer, session: _Session) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's learning-rate schedule (``lr_factor``) on ``optimizer``, stepped once per optimiser step."""
    tcfg, data = session.run.train, session.data
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(
            s,
            tcfg.scheduler,
            base_lr=tcfg.optimizer.lr,
            total_steps=data.total_steps,
            steps_per_epoch=data.steps_per_epoch,
        ),
    )


def _critic(model: torch.nn.Module, session: _Session) -> CriticUpdate | None:
    """The discriminator side of a GAN release (``model.adversary()``) with its own optimiser (the run's settings, as
    both GAN releases give their discriminators the generator's) and schedule; ``None`` for other models."""
    adversary = model.adversary()
    if adversary is None:
        return None
    adversary.to(session.device).train()
    distributed.broadcast_module(adversary)  # each rank drew it under its own seed: start from rank 0's
    optimizer = build_optimizer(list(adversary.parameters()), session.run.train.optimizer)
    return CriticUpdate(adversary, optimizer, _schedule(optimizer, session))


def _epochs(session: _Session, train_step: TrainStep, step: int) -> float | None:
    """The loop over epochs and steps from ``step`` to the end: log, validate and checkpoint at their intervals."""
    run, data, env, tcfg = session.run, session.data, session.env, session.run.train
    val_psnr = None
    bar = tqdm(
        total=data.total_steps,
        initial=step,
        desc=f"train {run.model.name}",
        mininterval=2.0,
        file=sys.stderr,
        disable=not env.is_main,
    )
    t0, images = time.perf_counter(), 0
    while step < data.total_steps:
        epoch, offset = divmod(step, data.steps_per_epoch)
        data.train_set.set_epoch(epoch)
        batches = epoch_batches(len(data.train_set), tcfg.batch_size, run.seed, epoch)[offset:]
        loader = torch.utils.data.DataLoader(
            data.train_set,
            batch_sampler=rank_slices(batches, env.rank, env.world_size),
            num_workers=tcfg.num_workers,
            pin_memory=session.device.type == "cuda",
            # A private generator: creating a loader iterator must not consume the global RNG (resume exactness).
            generator=torch.Generator().manual_seed(run.seed + epoch),
        )
        for batch in loader:
            if step >= data.total_steps:
                break
            try:
                logged = train_step(batch["lq"], batch["gt"])
            except NonFiniteLossError as err:
                raise session.non_finite(err, step) from None
            step += 1
            images += batch["lq"].shape[0] * env.world_size
            bar.update(1)
            if step % tcfg.log_every == 0 or step == data.total_steps:
                rate = images / max(time.perf_counter() - t0, 1e-9)
                metrics = {f"loss/{k}": v for k, v in logged.items()}
                lr = train_step.scheduler.get_last_lr()[0]
                metrics |= {"lr": lr, "train/images_per_s": rate}
                session.log(metrics, step)
                if session.curves is not None:
                    session.curves.add_loss(step, logged, lr)
                bar.set_postfix(loss=f"{logged['total']:.4f}")
            if step % tcfg.val_every == 0 or step == data.total_steps:
                val = session.held_out_psnr()  # rank 0 only; the other ranks wait at the barrier
                if val is not None:
                    val_psnr = val
                    session.log_val(val, step)
                distributed.barrier()
            if step % tcfg.checkpoint_every == 0 or step == data.total_steps:
                session.save_last(step, train_step.optimizer, train_step.scheduler, train_step.critic)
    bar.close()
    return val_psnr
