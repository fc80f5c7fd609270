"""Bootstrap intervals and paired tests: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.scoring.stats import bootstrap_ci, paired_test


def test_constant_sample_has_a_point_interval() -> None:
    assert bootstrap_ci([31.5] * 40) == (31.5, 31.5)


def test_interval_of_a_large_normal_sample_is_the_textbook_one() -> None:
    sample = np.random.default_rng(0).normal(30.0, 2.0, size=2000)
    low, high = bootstrap_ci(sample)
    half = 1.96 * sample.std() / np.sqrt(sample.size)
    assert low == pytest.approx(sample.mean() - half, abs=0.01) and high == pytest.approx(
        sample.mean() + half, abs=0.01
    )
    assert bootstrap_ci(sample) == (low, high)  # seeded: the same interval every time


def test_paired_test_exact_known_answers() -> None:
    # Four images, all improved by 1 dB: only "all +" and "all -" reach |mean| = 1 -> p = 2 / 16.
    assert paired_test([2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 16)
    assert paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0  # identical methods
    # d = (1, -1, 2): |mean| = 2/3. Signed sums of the 8 patterns: +++ 2, ++- -2, +-+ 4, +-- 0, -++ 0, -+- -4,
    # --+ 2, --- -2: six reach |sum| >= 2 -> p = 6 / 8.
    assert paired_test([1.0, -1.0, 2.0], [0.0, 0.0, 0.0]) == pytest.approx(6 / 8)


def test_paired_test_monte_carlo_detects_a_consistent_gain() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(30, 2, size=200)
    assert paired_test(a + 0.1 + rng.normal(0, 0.05, 200), a) < 0.001
    assert paired_test(a + rng.normal(0, 0.05, 200), a) > 0.01


def test_bad_samples_are_errors() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="pair the same images"):
        paired_test([1.0, 2.0], [1.0])
