"""The scoring loop that validation (during training) and evaluation share: a model over a loader, per-image scores."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.inference import restore
from benchmark.scoring.protocol import score
from benchmark.scoring.realblur import AlignmentError


@dataclass(frozen=True)
class Scores:
    """Per-image scores of one pass over a test set.

    Attributes:
        names: The images, in loader order.
        values: Metric (``psnr``, ``ssim``, ``ssim_<variant>``) -> one float64 score per image, in ``names`` order.
        seconds: Wall time of the pass (model and scoring).
    """

    names: tuple[str, ...]
    values: dict[str, tuple[float, ...]]
    seconds: float

    @property
    def means(self) -> dict[str, float]:
        """Mean of each metric over the images (empty for an empty pass)."""
        if not self.names:
            return {}
        return {k: float(np.mean(np.asarray(v, dtype=np.float64))) for k, v in self.values.items()}


def score_model(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    protocol: ScoringProtocol,
    *,
    device: torch.device | None = None,
    progress: bool = True,
) -> Scores:
    """Score ``model`` on ``loader`` under one protocol (:func:`score_protocols` with one)."""
    return score_protocols(model, loader, (protocol,), device=device, progress=progress)[0]


@torch.no_grad()
def score_protocols(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    protocols: Sequence[ScoringProtocol],
    *,
    device: torch.device | None = None,
    progress: bool = True,
) -> tuple[Scores, ...]:
    """Score ``model`` (in eval mode) on every batch of ``loader`` (dicts with ``lq``, ``gt`` (N, 3, H, W) in [0, 1]
    and ``name``) under each of ``protocols``, in one pass over the images. Protocols that run the model the same way
    (``ScoringProtocol.inference``: tiling and padding) share one restoration, so an official and a release protocol
    that differ only in scoring cost one inference. Does no I/O beyond the loader.

    Returns:
        One :class:`Scores` per protocol, in order; each ``seconds`` is the whole pass's wall time.

    Raises:
        RuntimeError: the model changed the image size.
        AlignmentError: ECC failed on an image (named).
    """
    device = device or torch.device("cpu")
    model.eval()
    names: list[str] = []
    values: list[dict[str, list[float]]] = [{m: [] for m in p.metrics} for p in protocols]
    t0 = time.perf_counter()
    for batch in tqdm(loader, desc="evaluate", disable=not progress, mininterval=2.0, file=sys.stderr):
        lq, gt = batch["lq"].to(device), batch["gt"].to(device)
        restored: dict[tuple, torch.Tensor] = {}
        for protocol, columns in zip(protocols, values, strict=True):
            if protocol.inference not in restored:
                restored[protocol.inference] = _restore_checked(model, lq, protocol)
            try:
                scores = score(restored[protocol.inference].float(), gt, protocol)
            except AlignmentError as err:
                raise AlignmentError(f"{', '.join(batch['name'])}: {err}") from err
            for metric, column in columns.items():
                column.extend(float(v) for v in scores[metric])
        names.extend(batch["name"])
    seconds = time.perf_counter() - t0
    return tuple(Scores(tuple(names), {k: tuple(v) for k, v in cols.items()}, seconds) for cols in values)


def _restore_checked(model: torch.nn.Module, lq: torch.Tensor, protocol: ScoringProtocol) -> torch.Tensor:
    pred = restore(model, lq, protocol)
    if pred.shape != lq.shape:
        raise RuntimeError(f"model returned {tuple(pred.shape)} for an input of {tuple(lq.shape)}")
    return pred
