"""Scoring in worker processes (``eval.score_workers``): the serial path's scores, in order, and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from benchmark.core.config import load_config
from benchmark.scoring.loop import score_protocols
from benchmark.scoring.pool import default_workers, score_pool
from benchmark.scoring.realblur import AlignmentError


class _Blur(torch.nn.Module):
    """A fixed 3x3 box blur: deterministic outputs that differ from the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def _loader(n: int = 5, batch: int = 2) -> list[dict]:
    """Crops of the astronaut (ground truth) against crops shifted by (2, -1) px (input): ECC has work to do."""
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    items = []
    for i in range(n):
        r, c = 40 + 60 * i, 50 + 45 * i
        gt, lq = photo[:, r : r + 72, c : c + 96], photo[:, r + 2 : r + 74, c - 1 : c + 95]
        items.append((lq, gt, f"im{i}"))
    return [
        {
            "lq": torch.stack([lq for lq, _, _ in items[s : s + batch]]),
            "gt": torch.stack([gt for _, gt, _ in items[s : s + batch]]),
            "name": [name for _, _, name in items[s : s + batch]],
        }
        for s in range(0, n, batch)
    ]


def _protocols() -> tuple:
    return tuple(load_config([f"dataset={d}"]).dataset.protocol for d in ("gopro", "realblur_j"))


def test_pool_scores_equal_the_serial_scores_in_loader_order() -> None:
    serial = score_protocols(_Blur(), _loader(), _protocols(), progress=False, workers=0)
    pooled = score_protocols(_Blur(), _loader(), _protocols(), progress=False, workers=2)
    for s, p in zip(serial, pooled, strict=True):
        assert p.names == s.names == ("im0", "im1", "im2", "im3", "im4")
        assert p.values == s.values  # exact: one thread or several, the same arithmetic
    assert set(serial[0].values) == {"psnr", "ssim", "ssim_matlab3d"} and set(serial[1].values) == {"psnr", "ssim"}
    # Real work was done: RealBlur's alignment undoes most of the shift that the plain protocol is scored with.
    plain, aligned = serial[0].values["psnr"], serial[1].values["psnr"]
    assert all(a > p + 5 for a, p in zip(aligned, plain, strict=True))


def test_an_alignment_failure_in_a_worker_names_the_image() -> None:
    loader = _loader(n=3, batch=1)
    loader[1]["lq"] = torch.full_like(loader[1]["lq"], 0.5)  # a flat image: ECC cannot converge
    loader[1]["gt"] = torch.full_like(loader[1]["gt"], 0.5)
    with pytest.raises(AlignmentError, match=r"^im1: ECC alignment failed"):
        score_protocols(_Blur(), loader, _protocols()[1:], progress=False, workers=2)


def test_a_bad_output_in_a_worker_is_the_serial_error() -> None:
    class _NaN(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    protocol = load_config(["dataset=gopro", "dataset.protocol.quantize=none"]).dataset.protocol
    for workers in (0, 2):
        with pytest.raises(ValueError, match="pred contains NaN or inf"):
            score_protocols(_NaN(), _loader(), (protocol,), progress=False, workers=workers)


def test_pool_arguments() -> None:
    assert default_workers() >= 1
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"), score_pool(-1):
        pass
