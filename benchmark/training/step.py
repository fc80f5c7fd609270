"""The training step: what one optimiser step runs, shared by the training loop and ``benchmark.tools.bench``."""

from __future__ import annotations

import math

import torch

from benchmark.core.errors import HarnessError
from benchmark.training import distributed
from models import DeblurModel
from models.adversarial import Adversary


class NonFiniteLossError(HarnessError, RuntimeError):
    """The loss became NaN or infinite; the step stopped before the optimiser step.

    Attributes:
        terms: The loss terms of the failing step (mean over ranks).
    """

    def __init__(self, message: str, terms: dict[str, float]) -> None:
        super().__init__(message)
        self.terms = terms


class CriticUpdate:
    """The discriminator updates of a GAN release (``models.adversarial``), run inside the generator's step.

    ``adversary.d_steps`` times: ``d_scale * d_loss`` on the detached output, checked finite before anything changes,
    backward, gradients averaged over the ranks (the discriminator is not wrapped in DDP: its gradients are reduced
    here, as DDP would), the optimiser; then the schedule once. Gradients that the generator's backward leaves in the
    discriminator are cleared before each update, never applied.

    Args:
        adversary: From the model's ``adversary()``, on the training device.
        optimizer: Over the adversary's parameters (the run's optimiser settings: both releases use the generator's).
        scheduler: The run's schedule, stepped with the generator's.
    """

    def __init__(
        self, adversary: Adversary, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> None:
        self.adversary, self.optimizer, self.scheduler = adversary, optimizer, scheduler

    @torch.compiler.disable  # optimiser steps and a double backward: always eager, also under train.compile
    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """``fake``: the generator's output, detached; returns ``{"critic": the last update's loss}``."""
        loss = fake.new_zeros(())
        for _ in range(self.adversary.d_steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.adversary.d_scale * self.adversary.d_loss(fake, real)
            value = distributed.reduce_mean(loss.detach().float().reshape(1))
            if not math.isfinite(value.item()):
                raise NonFiniteLossError("non-finite discriminator loss", {"critic": value.item()})
            loss.backward()
            for p in self.adversary.parameters():
                if p.grad is not None:
                    p.grad.copy_(distributed.reduce_mean(p.grad))
            self.optimizer.step()
        self.scheduler.step()
        return {"critic": loss.detach()}


class LossStep(torch.nn.Module):
    """``forward(lq, gt) -> loss terms`` of a model: the unit that DistributedDataParallel and ``torch.compile`` wrap.

    DDP synchronises gradients only for computations that run through its own ``forward``, and a model's training
    path is ``forward_train`` + ``loss`` (not ``forward``), so both are folded into this module's forward. With a
    ``critic`` (a GAN release), the discriminator updates run between the generator's forward and its loss, and the
    total gains ``weight * g_loss`` (logged as ``adversarial``), the releases' order.
    """

    def __init__(self, model: DeblurModel, critic: CriticUpdate | None = None) -> None:
        super().__init__()
        self.model = model
        self.critic = critic

    def forward(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model.forward_train(lq, gt)
        if self.critic is None:
            return dict(self.model.loss(out, gt))
        terms = self.critic(out.restored.detach(), gt)
        terms |= self.model.loss(out, gt)
        adversary = self.critic.adversary
        adversarial = adversary.g_loss(out.restored, gt)
        return terms | {"adversarial": adversarial, "total": terms["total"] + adversary.weight * adversarial}


def training_runner(
    model: DeblurModel,
    *,
    device: torch.device,
    channels_last: bool,
    compile: bool,
    data_parallel: bool,
    critic: CriticUpdate | None = None,
) -> torch.nn.Module:
    """``LossStep(model, critic)``, wrapped in DistributedDataParallel for a multi-process job and in ``torch.compile``
    when asked. With ``channels_last`` the model is converted in place (:class:`TrainStep` feeds it channels-last
    inputs)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    runner: torch.nn.Module = LossStep(model, critic)
    if data_parallel:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(runner) if compile else runner


class TrainStep:
    """One optimiser step on a batch: forward under the run's autocast, the loss terms averaged over the ranks, a
    guard against a non-finite loss (before anything changes), backward, the optimiser and the schedule.

    Args:
        runner: From :func:`training_runner`.
        optimizer: Over the model's trainable parameters.
        scheduler: Stepped once per optimiser step.
        device: Where the batch goes (``non_blocking``: pinned batches overlap the copy with compute).
        bf16: bf16 autocast (``train.bf16``).
        channels_last: Feed channels-last batches (``train.channels_last``).
        critic: The runner's discriminator updates (a GAN release), kept here for the checkpoints.
    """

    def __init__(
        self,
        runner: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        device: torch.device,
        bf16: bool,
        channels_last: bool,
        critic: CriticUpdate | None = None,
    ) -> None:
        self.runner, self.optimizer, self.scheduler, self.critic = runner, optimizer, scheduler, critic
        self.device, self.bf16 = device, bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
        """Train on one batch (N, 3, H, W) in [0, 1]; returns the global batch's loss terms (mean over ranks).

        Raises:
            NonFiniteLossError: the total loss is NaN or infinite on any rank; nothing was updated.
        """
        lq = lq.to(self.device, non_blocking=True, memory_format=self.memory_format)
        gt = gt.to(self.device, non_blocking=True, memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            terms = self.runner(lq, gt)
        # The global batch's loss terms (this rank's alone for one process). A non-finite value on any rank is
        # non-finite in the mean, so every rank stops at the same step.
        names = list(terms)
        reduced = distributed.reduce_mean(torch.stack([terms[k].detach().float() for k in names]))
        logged = dict(zip(names, reduced.tolist(), strict=True))
        if not math.isfinite(logged["total"]):
            raise NonFiniteLossError("non-finite loss", logged)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        self.scheduler.step()
        return logged
