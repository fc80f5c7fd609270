"""Optimisers, learning-rate schedules and the order samples are drawn in: pure functions, so resuming is exact."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmark.core.sections import OptimizerConfig, SchedulerConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
"""``train.optimizer.name`` -> optimiser class."""


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def _step_decay(step: int, cfg: SchedulerConfig, *, base_lr: float, span: int, steps_per_epoch: int) -> float:
    return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))


def _cosine(step: int, cfg: SchedulerConfig, *, base_lr: float, span: int, steps_per_epoch: int) -> float:
    t = min(step, span) / span
    floor = cfg.min_lr / base_lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _constant(step: int, cfg: SchedulerConfig, *, base_lr: float, span: int, steps_per_epoch: int) -> float:
    return 1.0


def _poly(step: int, cfg: SchedulerConfig, *, base_lr: float, span: int, steps_per_epoch: int) -> float:
    # tf.train.polynomial_decay (SRN-Deblur's models/model.py: power 0.3, end_learning_rate 0): from the base rate to
    # min_lr as (1 - step / span) ** power, held at min_lr after the span.
    floor = cfg.min_lr / base_lr
    return floor + (1 - floor) * (1 - min(step, span) / span) ** cfg.power


SCHEDULES: dict[str, Callable[..., float]] = {
    "step": _step_decay,
    "cosine": _cosine,
    "constant": _constant,
    "poly": _poly,
}
"""``train.scheduler.name`` -> the multiplier after the warm-up, as a function of the steps since it ended."""


def lr_factor(step: int, cfg: SchedulerConfig, *, base_lr: float, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps (a pure function, so resuming is exact).

    ``step``: the rate is multiplied by ``gamma`` every ``step_epochs`` epochs; ``cosine``: from the base rate to
    ``min_lr`` over the run; ``constant``; ``poly``: ``(1 - t) ** power`` from the base rate to ``min_lr`` over the
    run (TensorFlow's ``polynomial_decay``). Each follows a linear warm-up of ``warmup_epochs`` epochs.
    """
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        # Linear warm-up to the base rate (MPRNet's GradualWarmupScheduler, multiplier 1; per step, not per epoch).
        return (step + 1) / warmup
    span = max(total_steps - warmup, 1)
    return SCHEDULES[cfg.name](step - warmup, cfg, base_lr=base_lr, span=span, steps_per_epoch=steps_per_epoch)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a seeded permutation of ``range(n)``, incomplete last batch dropped."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def rank_slices(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s share of each global batch: the ``rank``-th of ``world_size`` equal contiguous slices."""
    out = []
    for batch in batches:
        per = len(batch) // world_size
        out.append(batch[rank * per : (rank + 1) * per])
    return out
