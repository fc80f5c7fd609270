"""How a protocol runs a model on a test image: whole or in tiles, with the model's own padding or another one."""

from __future__ import annotations

from torch import Tensor, nn

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.tiles import tiled_forward


def restore(model: nn.Module, lq: Tensor, protocol: ScoringProtocol) -> Tensor:
    """``model``'s restoration of ``lq`` (N, 3, H, W) in [0, 1] as ``protocol`` runs it: (N, 3, H, W), unclamped.

    ``protocol.padding`` other than ``model`` is passed as ``forward(lq, pad_mode=...)`` (``models.base``); with
    ``protocol.tile`` the model runs on overlapping tiles, overlaps averaged (``benchmark.scoring.tiles``).
    """

    def forward(x: Tensor) -> Tensor:
        return model(x) if protocol.padding == "model" else model(x, pad_mode=protocol.padding)

    if protocol.tile is None:
        return forward(lq)
    return tiled_forward(forward, lq, protocol.tile)
