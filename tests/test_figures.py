"""Figures: entropy and JSD known answers, and the figures rendered as real PNGs from a small dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmark.data.dataset import PairedDataset
from benchmark.data.identity import record_identity
from benchmark.reporting.figures import (
    SCALES,
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


def _expected_jsd(images_a: list[torch.Tensor], images_b: list[torch.Tensor]) -> dict[str, float]:
    out = {}
    for scale in SCALES:
        a = [component_entropies(im, sigma=2.0, scale=scale) for im in images_a]
        b = [component_entropies(im, sigma=2.0, scale=scale) for im in images_b]
        for band in (0, 1):
            out[f"{('LF', 'HF')[band]}@1/{scale}"] = jensen_shannon([e[band] for e in a], [e[band] for e in b])
    return out


def test_figures_are_rendered_for_the_pipeline(small_cfg, tiny_synth: Path) -> None:
    cfg = small_cfg("pipeline.models=[identity]", "figures.model=identity", "figures.crop=32")
    figures = run_figures(cfg)
    names = sorted(f.path.name for f in figures)
    assert names == [
        "figure1_synthblur.png",
        "figure5_synthblur-synthblur.png",
        "figure6_synthblur_identity-synthblur.png",
        "leaderboard.png",  # the released models' leaderboard (benchmark.reporting.leaderboard)
    ]
    for figure in figures:
        with Image.open(figure.path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    jsd = {f.path.name: f.jsd for f in figures}
    items = list(PairedDataset(tiny_synth, "test", crop_size=None, augment="none"))
    expected = _expected_jsd([it["gt"] for it in items], [it["lq"] for it in items])
    assert jsd["figure1_synthblur.png"] == pytest.approx(expected, abs=1e-12)
    assert set(expected) == {"LF@1/1", "HF@1/1", "LF@1/2", "HF@1/2", "LF@1/4", "HF@1/4"}
    assert max(expected.values()) > 0  # blur changes the entropies of these images
    # identity restores nothing: Figure 6 (sharp vs its outputs) is Figure 1 (sharp vs blurry) exactly.
    assert jsd["figure6_synthblur_identity-synthblur.png"] == jsd["figure1_synthblur.png"]
    assert jsd["figure5_synthblur-synthblur.png"] is None
    assert (cfg.layout.figures / "README.md").read_text().count("- `figure") == 3
    assert "- `leaderboard.png`" in (cfg.layout.figures / "README.md").read_text()


def test_figure1_of_a_dataset_without_blur_shows_no_divergence(small_cfg, tiny_synth: Path, tmp_path: Path) -> None:
    """Known answer: where every blurry image is its sharp image, both entropy distributions coincide: JSD 0."""
    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data / "synthblur")
    for sharp in (data / "synthblur" / "test" / "sharp").iterdir():
        shutil.copyfile(sharp, data / "synthblur" / "test" / "blur" / sharp.name)
    record_identity(data / "synthblur", "synthblur", "test")
    cfg = small_cfg(f"paths.data={data}", "pipeline.models=[identity]", "figures.model=identity", "figures.crop=32")
    first = next(f for f in run_figures(cfg) if f.path.name == "figure1_synthblur.png")
    assert first.jsd == dict.fromkeys(first.jsd, 0.0) and len(first.jsd) == 6
