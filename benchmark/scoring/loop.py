"""The scoring loop that validation (during training) and evaluation share: a model over a loader, per-image scores."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from benchmark.core.sections import ScoringProtocol
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


@torch.no_grad()
def score_model(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    protocol: ScoringProtocol,
    *,
    device: torch.device | None = None,
    progress: bool = True,
) -> Scores:
    """Score ``model`` (in eval mode) on every batch of ``loader`` (dicts with ``lq``, ``gt`` (N, 3, H, W) in [0, 1] and
    ``name``) under ``protocol``. Does no I/O beyond the loader.

    Raises:
        RuntimeError: the model changed the image size.
        AlignmentError: ECC failed on an image (named).
    """
    device = device or torch.device("cpu")
    model.eval()
    names: list[str] = []
    values: dict[str, list[float]] = {m: [] for m in protocol.metrics}
    t0 = time.perf_counter()
    for batch in tqdm(loader, desc="evaluate", disable=not progress, mininterval=2.0, file=sys.stderr):
        lq, gt = batch["lq"].to(device), batch["gt"].to(device)
        pred = model(lq)
        if pred.shape != gt.shape:
            raise RuntimeError(f"model returned {tuple(pred.shape)} for an input of {tuple(lq.shape)}")
        try:
            scores = score(pred.float(), gt, protocol)
        except AlignmentError as err:
            raise AlignmentError(f"{', '.join(batch['name'])}: {err}") from err
        names.extend(batch["name"])
        for metric, column in values.items():
            column.extend(float(v) for v in scores[metric])
    return Scores(tuple(names), {k: tuple(v) for k, v in values.items()}, time.perf_counter() - t0)
