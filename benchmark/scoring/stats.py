"""Uncertainty of per-image results: bootstrap confidence intervals and paired tests. Pure functions, seeded.

Every benchmark number is a mean over a few hundred to a thousand test images, so two methods 0.05 dB apart may not
differ at all on this test set. ``bootstrap_ci`` gives a percentile bootstrap interval of a mean; ``paired_test``
asks whether two methods scored on the *same* images differ, by a sign-flip permutation test on the per-image
differences (exact for up to 16 images, Monte Carlo beyond).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

N_RESAMPLES = 10_000
EXACT_MAX_N = 16


def _as_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sample, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the sample contains NaN or inf")
    return array


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (images resampled with replacement).

    Returns:
        ``(low, high)``; a constant sample gives ``(c, c)``.
    """
    sample = _as_array(values, "bootstrap_ci")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if sample.min() == sample.max():
        return float(sample[0]), float(sample[0])
    rng = np.random.default_rng(seed)
    index = rng.integers(0, sample.size, size=(n_resamples, sample.size))
    means = sample[index].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    # Clamp to the sample's range: quantile interpolation must not leave it (and a constant sample gives (c, c)).
    return float(max(low, sample.min())), float(min(high, sample.max()))


def paired_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> float:
    """Two-sided p-value that methods ``a`` and ``b``, scored on the same images in the same order, have equal means.

    Under the null hypothesis the sign of each per-image difference is exchangeable; the p-value is the share of sign
    assignments whose mean difference is at least as far from 0 as the observed one. All ``2**n`` assignments are
    enumerated for ``n <= 16`` images (an exact test); otherwise ``n_resamples`` random ones, counted with the
    observed one (``(1 + k) / (1 + n_resamples)``, never 0).
    """
    x, y = _as_array(a, "paired_test a"), _as_array(b, "paired_test b")
    if x.shape != y.shape:
        raise ValueError(f"paired_test: samples differ in size ({x.size} vs {y.size}); pair the same images")
    d = x - y
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if d.size <= EXACT_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        stats = np.abs((signs * d).mean(axis=1))
        return float(np.mean(stats >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, d.size))
    stats = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(stats >= observed - tolerance)) / (1 + n_resamples))
