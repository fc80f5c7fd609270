"""Figures: entropy and JSD known answers, and the figures rendered as real PNGs from a small dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmark.figures import (
    component_entropies,
    entropy_bits,
    gaussian_lowpass,
    jensen_shannon,
    jsd_bins,
    run_figures,
)


def test_entropy_known_answers() -> None:
    assert entropy_bits(torch.full((32, 32), 0.3), 0.0, 1.0) == 0.0
    # 256 equally frequent levels, one per bin: exactly 8 bits.
    levels = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    assert entropy_bits(levels.repeat(4), 0.0, 1.0) == pytest.approx(8.0)
    # Two equally frequent values: 1 bit.
    assert entropy_bits(torch.tensor([0.1, 0.9] * 50), 0.0, 1.0) == pytest.approx(1.0)


def test_lowpass_keeps_constants_and_hf_of_a_flat_image_is_zero() -> None:
    flat = torch.full((20, 24), 0.4, dtype=torch.float64)
    torch.testing.assert_close(gaussian_lowpass(flat, 2.0), flat)
    image = torch.full((3, 16, 16), 0.5, dtype=torch.float64)
    lf, hf = component_entropies(image, sigma=2.0, scale=2)
    assert (lf, hf) == (0.0, 0.0)


def test_jensen_shannon_known_answers() -> None:
    assert jensen_shannon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.0)
    assert jensen_shannon([0.0, 0.0], [10.0, 10.0]) == pytest.approx(1.0)  # disjoint supports: 1 bit
    # Half the mass shared: P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2) on 3 bins -> JSD = 1/2 bit.
    assert jensen_shannon([0.0, 1.0], [1.0, 2.0], bins=3) == pytest.approx(0.5)
    assert (jsd_bins(12), jsd_bins(100), jsd_bins(1111)) == (5, 10, 30)


def test_figures_are_rendered_for_the_pipeline(small_cfg, tiny_synth: Path) -> None:
    cfg = small_cfg(
        f"paths.data={tiny_synth.parent}", "pipeline.models=[identity]", "figures.model=identity", "figures.crop=32"
    )
    written = run_figures(cfg)
    names = sorted(p.name for p in written)
    assert names == [
        "figure1_synthblur.png",
        "figure5_synthblur-synthblur.png",
        "figure6_synthblur_identity-synthblur.png",
    ]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
