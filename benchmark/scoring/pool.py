"""Scoring in worker processes while the model restores the next image: ``eval.score_workers``.

Scoring is CPU-bound (float64 SSIM, and for RealBlur OpenCV's ECC alignment), while the model may run on a GPU or on
the remaining cores, so :func:`score_pool` hands each restored batch to one of ``workers`` processes and the loop goes
on restoring. Each worker runs ``benchmark.scoring.protocol.score`` itself, on one thread, so its numbers are the
serial path's: every reduction is thread-count independent (``metrics.mean_over``), elementwise float64 arithmetic is
the same on every thread, and ``tests/test_score_pool.py`` checks equality on both the plain and the RealBlur protocol.

``workers == 0`` scores in the calling process (validation during training does: its sets are small, and a pool would
compete with the training step for the same cores).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.protocol import score

__all__ = ["default_workers", "score_pool"]


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, which SLURM and containers restrict), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    # One thread per process: N processes on N cores, not N x N threads competing for them.
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)


def _score_arrays(pred: np.ndarray, gt: np.ndarray, protocol: ScoringProtocol) -> dict[str, np.ndarray]:
    """``score`` on (N, 3, H, W) float32 arrays (numpy crosses the process boundary by plain pickling)."""
    scores = score(torch.from_numpy(pred), torch.from_numpy(gt), protocol)
    return {k: v.numpy() for k, v in scores.items()}


class _Serial:
    """The pool's interface without processes: ``submit`` scores at once, on ``pred``'s device."""

    def submit(self, pred: torch.Tensor, gt: torch.Tensor, protocol: ScoringProtocol) -> Future:
        done: Future = Future()
        try:
            scores = score(pred, gt.to(pred.device), protocol)
            done.set_result({k: v.cpu().numpy() for k, v in scores.items()})
        except Exception as err:  # the caller's result() raises it, as a worker's would be
            done.set_exception(err)
        return done


class _Processes:
    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self._executor = executor

    def submit(self, pred: torch.Tensor, gt: torch.Tensor, protocol: ScoringProtocol) -> Future:
        return self._executor.submit(_score_arrays, pred.cpu().numpy(), gt.cpu().numpy(), protocol)


def _context() -> multiprocessing.context.BaseContext:
    """Forkserver where there is one: workers fork from a clean server process that has imported the scoring code
    once. Not plain fork: a child forked from a process whose OpenMP pool has run (any torch op here) hangs in its first
    parallel region, as the first version of this pool did in its test."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The scoring code's lazy imports too (scipy.ndimage, OpenCV, scikit-image's metrics): every worker forked from the
    # server then starts with them loaded, instead of paying about a second of imports on its first image.
    context.set_forkserver_preload([__name__, "scipy.ndimage", "cv2", "skimage.metrics"])
    return context


@contextmanager
def score_pool(workers: int) -> Iterator[_Serial | _Processes]:
    """A pool whose ``submit(pred, gt, protocol)`` returns a future of ``score``'s dict, as float64 numpy arrays.

    Args:
        workers: processes; 0 scores in this process (``submit`` returns a finished future).

    Workers start from a fork server (``_context``), or are spawned where there is none; they never touch CUDA, so a
    parent that has initialised it is fine. Leaving the block waits for queued work and stops them;
    an exception inside it cancels what has not started.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        yield _Serial()
        return
    executor = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker)
    try:
        yield _Processes(executor)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
