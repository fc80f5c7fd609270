"""The paper's Figures 1, 5, 6 and 7 for the pipeline's datasets: the ``figures`` stage (``benchmark.figures``).

- **Figure 1** (``figure1_<test set>.png``): distributions over the test images of the entropy of the low-frequency
  component (LF: Gaussian low-pass, ``figures.sigma`` px) and of the high-frequency component (HF: image minus its
  low-pass), sharp vs blurry, at full, 1/2 and 1/4 scale (2x2 area averaging). The Jensen-Shannon divergence between
  the two distributions is printed on each panel.
- **Figure 6** (``figure6_<test set>.png``): the same, sharp vs the outputs of ``figures.model`` (8-bit rounded).
- **Figure 5 / 7** (``figure5_<train set>.png`` on the training set's own test split, ``figure7_<test set>.png`` on the
  other test sets): the same ``figures.crop`` crop of one test image across the blurry input, every pipeline model
  and the ground truth, each labelled with the PSNR of the whole image under the test set's protocol.

Definitions (stated in the figure captions too): images are converted to luma (Rec. 601: 0.299 R + 0.587 G +
0.114 B) in [0, 1]; the entropy of a component is the Shannon entropy in bits of its 256-bin histogram over a fixed
range ([0, 1] for LF, [-0.5, 0.5] for HF, values outside clipped into the end bins); the JSD is computed in bits
(base 2, so it lies in [0, 1]) between the histograms of the per-image entropies on shared bins, sqrt(number of
images) of them, between 5 and 30.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core import atomic
from benchmark.core.config import RunConfig, dataset_config, model_config
from benchmark.core.errors import ConfigError
from benchmark.core.sections import ScoringProtocol
from benchmark.data.dataset import PairedDataset
from benchmark.reporting.plotting import save_figure
from benchmark.scoring.metrics import quantize_uint8
from benchmark.scoring.protocol import score
from benchmark.weights.resolve import build_model, load_weights, resolve_weights

LUMA = (0.299, 0.587, 0.114)
SCALES = (1, 2, 4)
ENTROPY_BINS = 256
JSD_BINS = 30


def luma(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (H, W) luma in [0, 1]."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(0)


def gaussian_lowpass(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H, W) -> (H, W): separable Gaussian (radius ceil(3 sigma)), replicate borders."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=gray.dtype)
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    img = F.pad(gray[None, None], (radius, radius, radius, radius), mode="replicate")
    img = F.conv2d(img, taps.view(1, 1, 1, -1))
    return F.conv2d(img, taps.view(1, 1, -1, 1))[0, 0]


def entropy_bits(values: torch.Tensor, low: float, high: float, bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy (bits) of the histogram of ``values`` on ``bins`` equal bins over [low, high]."""
    hist = torch.histc(values.clamp(low, high).float().flatten(), bins=bins, min=low, max=high)
    p = hist / hist.sum()
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


def component_entropies(image: torch.Tensor, *, sigma: float, scale: int) -> tuple[float, float]:
    """(LF entropy, HF entropy) of a (3, H, W) image in [0, 1] downscaled by ``scale`` (area averaging)."""
    gray = luma(image.double())
    if scale > 1:
        gray = F.avg_pool2d(gray[None, None], scale)[0, 0]
    low = gaussian_lowpass(gray, sigma)
    return entropy_bits(low, 0.0, 1.0), entropy_bits(gray - low, -0.5, 0.5)


def jsd_bins(n: int) -> int:
    """Shared histogram bins for samples of ``n`` images: sqrt(n), between 5 and ``JSD_BINS``.

    A fixed 30 bins would leave most bins empty for a dozen images and push the JSD of two overlapping samples to 1.
    """
    return int(min(JSD_BINS, max(5, np.ceil(np.sqrt(n)))))


def jensen_shannon(a: Sequence[float], b: Sequence[float], bins: int | None = None) -> float:
    """JSD (bits, in [0, 1]) between the histograms of two samples on shared bins (default ``jsd_bins``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bins = bins or jsd_bins(min(a.size, b.size))
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    if high == low:
        return 0.0
    p, _ = np.histogram(a, bins=bins, range=(low, high))
    q, _ = np.histogram(b, bins=bins, range=(low, high))
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def entropy_figure(path: Path, groups: dict[str, list[torch.Tensor]], *, sigma: float, title: str) -> dict[str, float]:
    """Write a 2 x 3 figure (LF/HF x scales) comparing two image groups; returns the JSD of each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (name_a, images_a), (name_b, images_b) = groups.items()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    jsd: dict[str, float] = {}
    for col, scale in enumerate(SCALES):
        ent_a = [component_entropies(im, sigma=sigma, scale=scale) for im in images_a]
        ent_b = [component_entropies(im, sigma=sigma, scale=scale) for im in images_b]
        for row, band in enumerate(("LF", "HF")):
            a, b = [e[row] for e in ent_a], [e[row] for e in ent_b]
            value = jensen_shannon(a, b)
            jsd[f"{band}@1/{scale}"] = value
            ax = axes[row, col]
            edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=jsd_bins(min(len(a), len(b))))
            ax.hist(a, bins=edges, alpha=0.6, label=name_a, density=True)
            ax.hist(b, bins=edges, alpha=0.6, label=name_b, density=True)
            ax.set_title(f"{band}, scale {'1' if scale == 1 else f'1/{scale}'}: JSD = {value:.3f}")
            ax.set_xlabel("entropy (bits)")
            ax.legend(fontsize=8)
    fig.suptitle(
        f"{title}\nLF = Gaussian low-pass (sigma {sigma} px) of the luma, HF = luma - LF; entropy of the 256-bin "
        f"histogram; JSD in bits on {jsd_bins(min(len(images_a), len(images_b)))} shared bins (sqrt of the image "
        "count, 5 to 30)",
        fontsize=9,
    )
    save_figure(fig, path)
    return jsd


def grid_figure(path: Path, panels: list[tuple[str, torch.Tensor]], *, title: str) -> None:
    """One row of labelled (3, h, w) crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.9), constrained_layout=True)
    for ax, (label, image) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


@dataclass(frozen=True)
class Figure:
    """A written figure, and the Jensen-Shannon divergence (bits) of each panel of an entropy figure."""

    path: Path
    jsd: dict[str, float] | None = None


def _restorer(run: RunConfig, name: str, train: str) -> torch.nn.Module:
    """A pipeline model with the weights it was trained on ``train`` with (none for identity), in eval mode."""
    model = build_model(model_config(run, name))
    weights = resolve_weights(
        model_config(run, name),
        run.layout,
        checkpoint=None,
        train_dataset=train,
        dataset=train,
        has_parameters=len(model.state_dict()) > 0,
    )
    return load_weights(model, weights).eval()


def _psnr_label(name: str, pred: torch.Tensor, gt: torch.Tensor, protocol: ScoringProtocol) -> str:
    return f"{name}\n{score(pred[None], gt[None], protocol)['psnr'].item():.2f} dB"


def _visual(
    out: Path, models: dict[str, torch.nn.Module], items: list[dict], train: str, test: str, run: RunConfig
) -> Figure:
    """Figure 5 (``test == train``) or 7: one crop of one test image across the input, every model and the truth."""
    protocol = dataset_config(run, test).protocol
    names = [it["name"] for it in items]
    index = names.index(run.figures.image) if run.figures.image in names else 0
    lq, gt = items[index]["lq"], items[index]["gt"]
    h, w = gt.shape[-2:]
    side = min(run.figures.crop, h, w)
    top, left = (h - side) // 2, (w - side) // 2

    def crop(x: torch.Tensor) -> torch.Tensor:
        return x[..., top : top + side, left : left + side]

    panels = [(_psnr_label("blurry", lq, gt, protocol), crop(lq))]
    for name, model in models.items():
        if name == "identity":
            continue
        pred = quantize_uint8(model(lq[None]))[0]
        panels.append((_psnr_label(name, pred, gt, protocol), crop(pred)))
    panels.append(("ground truth", crop(gt)))
    number = 5 if test == train else 7
    path = out / f"figure{number}_{test}-{train}.png"
    grid_figure(path, panels, title=f"Figure {number}: {test} image {names[index]} (trained on {train})")
    return Figure(path)


@torch.no_grad()
def run_figures(run: RunConfig) -> list[Figure]:
    """Render every figure for the pipeline's train and test sets, and the folder's README; returns the figures."""
    cfg, out = run.figures, run.layout.figures
    if cfg.model not in run.pipeline.models:
        raise ConfigError(f"{cfg.model!r} is not in pipeline.models {list(run.pipeline.models)}", key="figures.model")
    figures: list[Figure] = []
    for train in run.pipeline.train_datasets:
        models = {m: _restorer(run, m, train) for m in run.pipeline.models}
        for test in run.pipeline.datasets:
            items = list(PairedDataset(run.layout.dataset(test), "test", crop_size=None, augment="none"))
            sharp, blurry = [it["gt"] for it in items], [it["lq"] for it in items]
            if train == run.pipeline.train_datasets[0]:  # Fig. 1 depends on the data only
                path = out / f"figure1_{test}.png"
                jsd = entropy_figure(
                    path, {"sharp": sharp, "blurry": blurry}, sigma=cfg.sigma, title=f"Figure 1: {test}"
                )
                figures.append(Figure(path, jsd))
            restored = [quantize_uint8(models[cfg.model](b[None]))[0] for b in blurry]
            path = out / f"figure6_{test}_{cfg.model}-{train}.png"
            jsd = entropy_figure(
                path,
                {"sharp": sharp, f"deblurred ({cfg.model})": restored},
                sigma=cfg.sigma,
                title=f"Figure 6: {test}, {cfg.model} trained on {train}",
            )
            figures.append(Figure(path, jsd))
            figures.append(_visual(out, models, items, train, test, run))
    from benchmark.reporting.leaderboard import leaderboard_figure, pipeline_leaderboard

    leaderboard_figure(out / "leaderboard.png", pipeline_leaderboard(run))
    figures.append(Figure(out / "leaderboard.png"))
    atomic.write_text(out / "README.md", _readme([f.path for f in figures]))
    return figures


def _readme(paths: list[Path]) -> str:
    listing = "\n".join(f"- `{p.name}`" for p in paths)
    return (
        "# Figures\n\nGenerated by `python -m benchmark.figures` (the `figures` stage); see its module docstring for "
        f"the definitions (low-pass sigma, entropy, JSD). Do not edit by hand.\n\n{listing}\n"
    )
