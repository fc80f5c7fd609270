"""Whether a run continues its ``last.pt`` (``train.resume``), and restoring the state it holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import torch

from benchmark.training.checkpoints import load_train_state, set_rng_state
from benchmark.training.distributed import DistEnv
from models import CheckpointError


def resume_state(path: Path, fingerprint: str, resume: Literal["auto"] | bool) -> dict[str, Any] | None:
    """The state to continue, or ``None`` to start over.

    ``auto``: continue ``path`` when it exists and was written under the same fingerprint (else start over, with a
    note); ``True``: it must exist and match; ``False``: always start over.

    Raises:
        CheckpointError: ``resume=true`` without a matching checkpoint, or an unreadable one.
    """
    if resume is False:
        return None
    if not path.exists():
        if resume is True:
            raise CheckpointError(f"train.resume=true but there is no checkpoint at {path}")
        return None
    state = load_train_state(path)
    if state["fingerprint"] == fingerprint:
        return state
    if resume is True:
        raise CheckpointError(
            f"train.resume=true but {path} was written under another config (fingerprint {state['fingerprint']} != "
            f"{fingerprint}); set train.resume=auto to start over"
        )
    print(f"[train] {path} belongs to another config; starting over", file=sys.stderr)
    return None


def restore(
    state: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    env: DistEnv,
    seed: int,
    path: Path,
    critic: Any = None,
) -> int:
    """Load ``state`` into the model, optimiser and scheduler (and a GAN's ``critic``: its discriminator side,
    optimiser and schedule) and restore this rank's RNG; returns the step.

    The step counter, schedule and fingerprint do not involve the process count, so a run resumes under any number
    of processes: RNG states are restored when it is unchanged, and re-seeded per rank from ``(seed, rank, step)``
    otherwise (dropout masks then differ; data order and weights continue exactly).
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if critic is not None:
        if "adversary" not in state:
            raise CheckpointError(f"{path} holds no discriminator for this GAN model; set train.resume=false")
        critic.adversary.load_state_dict(state["adversary"])
        critic.optimizer.load_state_dict(state["adversary_optimizer"])
        critic.scheduler.load_state_dict(state["adversary_scheduler"])
    step = int(state["step"])
    # One RNG state per rank (a single dict in checkpoints written before data parallelism existed).
    rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    if len(rng) == env.world_size:
        set_rng_state(rng[env.rank])
    else:
        torch.manual_seed(seed * 1_000_003 + env.rank * 7_919 + step)
        if env.is_main:
            print(
                f"[train] {path} was written by {len(rng)} process(es), resuming with {env.world_size}: data order "
                "and weights continue exactly, dropout masks are re-seeded",
                file=sys.stderr,
            )
    return step
