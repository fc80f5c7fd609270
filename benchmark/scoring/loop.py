"""The scoring loop that validation (during training) and evaluation share: a model over a loader, per-image scores."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.inference import restore
from benchmark.scoring.pool import score_pool
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
    workers: int = 0,
) -> Scores:
    """Score ``model`` on ``loader`` under one protocol (:func:`score_protocols` with one)."""
    return score_protocols(model, loader, (protocol,), device=device, progress=progress, workers=workers)[0]


@torch.no_grad()
def score_protocols(
    model: torch.nn.Module | None,
    loader: torch.utils.data.DataLoader,
    protocols: Sequence[ScoringProtocol],
    *,
    device: torch.device | None = None,
    progress: bool = True,
    workers: int = 0,
    keep: Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[Scores, ...]:
    """Score ``model`` (in eval mode) on every batch of ``loader`` (dicts with ``lq``, ``gt`` (N, 3, H, W) in [0, 1]
    and ``name``) under each of ``protocols``, in one pass over the images. Protocols that run the model the same way
    (``ScoringProtocol.inference``: tiling and padding) share one restoration, so an official and a release protocol
    that differ only in scoring cost one inference. With ``workers`` > 0, scoring runs in that many processes while
    the model restores the next batches (``benchmark.scoring.pool``); the scores are the serial path's, in loader
    order. ``keep(name, lq, restored, gt)``, if given, sees every image ((3, H, W) CPU tensors in [0, 1]; the
    restoration of the first protocol, before its rounding): the caller keeps what it wants to show (evaluation's
    MLflow samples). A batch that carries ``restored`` ((N, 3, H, W) in [0, 1]: result images read from files,
    ``benchmark.data.outputs``) is scored as it is, without running the model (``model`` may then be ``None``), on the
    same path as a restoration. Does no I/O beyond the loader.

    Returns:
        One :class:`Scores` per protocol, in order; each ``seconds`` is the whole pass's wall time.

    Raises:
        RuntimeError: the model changed the image size.
        AlignmentError: ECC failed on an image (named).
    """
    device = device or torch.device("cpu")
    if model is not None:
        model.eval()
    names: list[str] = []
    values: list[dict[str, list[float]]] = [{m: [] for m in p.metrics} for p in protocols]
    pending: deque[tuple[list[str], list[Future]]] = deque()
    t0 = time.perf_counter()
    with score_pool(workers) as pool:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, mininterval=2.0, file=sys.stderr):
            lq, gt = batch["lq"].to(device), batch["gt"]
            restored: dict[tuple, torch.Tensor] = {}
            futures = []
            for protocol in protocols:
                if protocol.inference not in restored:
                    restored[protocol.inference] = _restore_checked(model, lq, protocol, batch.get("restored"))
                futures.append(pool.submit(restored[protocol.inference], gt, protocol))
            if keep is not None:
                first = restored[protocols[0].inference].cpu()
                for i, name in enumerate(batch["name"]):
                    keep(name, batch["lq"][i], first[i], gt[i])
            pending.append((list(batch["name"]), futures))
            # Two batches in flight per worker keep every worker busy without holding the whole test set in memory.
            while len(pending) > 2 * max(workers, 0):
                names.extend(_collect(*pending.popleft(), values))
        while pending:
            names.extend(_collect(*pending.popleft(), values))
    seconds = time.perf_counter() - t0
    return tuple(Scores(tuple(names), {k: tuple(v) for k, v in cols.items()}, seconds) for cols in values)


def _collect(batch_names: list[str], futures: list[Future], values: list[dict[str, list[float]]]) -> list[str]:
    """Append one batch's scores (every protocol's future) to ``values``; returns the batch's names."""
    for future, columns in zip(futures, values, strict=True):
        try:
            scores = future.result()
        except AlignmentError as err:
            raise AlignmentError(f"{', '.join(batch_names)}: {err}") from err
        for metric, column in columns.items():
            column.extend(float(v) for v in scores[metric])
    return batch_names


def _restore_checked(
    model: torch.nn.Module | None, lq: torch.Tensor, protocol: ScoringProtocol, given: torch.Tensor | None
) -> torch.Tensor:
    """The model's restoration of ``lq`` under ``protocol``, or the ``given`` one (result files), as float32."""
    if given is not None:
        pred = given.to(lq.device)
    elif model is None:
        raise ValueError("score_protocols: a batch without 'restored' needs a model")
    else:
        pred = restore(model, lq, protocol)
    if pred.shape != lq.shape:
        raise RuntimeError(f"model returned {tuple(pred.shape)} for an input of {tuple(lq.shape)}")
    return pred.float()
