"""Training checkpoints, written atomically (``benchmark.core.atomic``) into ``<paths.checkpoints>/<model>-<dataset>/``.

- ``last.pt``: everything needed to resume: model, optimiser, scheduler, every rank's RNG states, step, the config
  fingerprint, the config and the MLflow run id, and for a GAN release its discriminator side (``adversary``,
  ``adversary_optimizer``, ``adversary_scheduler``); written every ``train.checkpoint_every`` steps and at the end.
- ``final.pt``: ``{"model": state_dict, "step", "fingerprint", "config"}`` after the last step; what evaluation loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.core import atomic
from models import CheckpointError

CHECKPOINT_FORMAT = "msfs-bench/train-state/1"


def rng_state() -> dict[str, Any]:
    """This process's torch (and CUDA) generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
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


def save_last(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: list[dict[str, Any]],
    step: int,
    fingerprint: str,
    config: dict[str, Any],
    mlflow_run_id: str | None,
    critic: Any = None,
) -> None:
    """Write the resumable state after ``step`` optimiser steps; ``rng`` holds every rank's generator states;
    ``critic`` (``benchmark.training.step.CriticUpdate``) the discriminator side of a GAN release."""
    adversarial = {}
    if critic is not None:
        adversarial = {
            "adversary": critic.adversary.state_dict(),
            "adversary_optimizer": critic.optimizer.state_dict(),
            "adversary_scheduler": critic.scheduler.state_dict(),
        }
    atomic.save_torch(
        path,
        adversarial
        | {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "step": step,
            "fingerprint": fingerprint,
            "world_size": len(rng),
            "config": config,
            "mlflow_run_id": mlflow_run_id or "",
        },
    )


def save_final(path: Path, *, model: torch.nn.Module, step: int, fingerprint: str, config: dict[str, Any]) -> None:
    """Write the trained weights (contiguous float tensors, whatever the training memory format)."""
    atomic.save_torch(path, {"model": model.state_dict(), "step": step, "fingerprint": fingerprint, "config": config})
