"""How a protocol runs a model on a test image: whole or in tiles, with the model's own padding or another one."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.tiles import tiled_forward


def restore(model: nn.Module, lq: Tensor, protocol: ScoringProtocol) -> Tensor:
    """``model``'s restoration of ``lq`` (N, 3, H, W) in [0, 1] as ``protocol`` runs it: (N, 3, H, W), unclamped.

    ``protocol.padding`` other than ``model`` is passed as ``forward(lq, pad_mode=...)`` (``models.base``); with
    ``protocol.tile`` the model runs on overlapping tiles, overlaps averaged (``benchmark.scoring.tiles``); with
    ``network_mode: train`` in train mode, seeded (the caller's ``torch.no_grad`` still holds).
    """

    def forward(x: Tensor) -> Tensor:
        return model(x) if protocol.padding == "model" else model(x, pad_mode=protocol.padding)

    def run() -> Tensor:
        return forward(lq) if protocol.tile is None else tiled_forward(forward, lq, protocol.tile)

    if protocol.network_mode == "eval":
        return run()
    return _in_train_mode(model, lq, protocol.seed, run)


def _in_train_mode(model: nn.Module, lq: Tensor, seed: int, run: Callable[[], Tensor]) -> Tensor:
    """``run()`` with ``model`` in train mode and torch's generators seeded with ``seed``: a release's stochastic
    test-time output, reproducibly. The generators, the model's mode and its buffers are restored afterwards: train-mode
    BatchNorm updates its running statistics (DeblurGAN-v2's backbones), which must not leak into an eval-mode
    protocol scored on the same model in the same pass (train mode never reads them, so outputs are unaffected)."""
    was_training = model.training
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    devices = [lq.device] if lq.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        try:
            return run()
        finally:
            model.train(was_training)
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
