"""One restored batch scored under a dataset's protocol (quantisation, border crop, SSIM variants, alignment)."""

from __future__ import annotations

import torch

from benchmark.core.sections import ScoringProtocol
from benchmark.scoring.metrics import (
    psnr,
    psnr_y,
    quantize_uint8,
    quantize_uint8_floor,
    quantize_uint8_half_up,
    ssim,
)
from benchmark.scoring.realblur import realblur_scores

QUANTIZERS = {
    "uint8": quantize_uint8,
    "uint8_half_up": quantize_uint8_half_up,
    "uint8_floor": quantize_uint8_floor,
    "none": lambda x: x.clamp(0, 1),
    # Result files (outputs=): their values are k / 255 already, on which every rule above is the identity
    # (tests/test_outputs.py checks all 256 in float32); the record says that nothing was rounded.
    "uint8_file": lambda x: x,
}
"""``ScoringProtocol.quantize`` -> what is done to an output before scoring."""


def score(pred: torch.Tensor, gt: torch.Tensor, protocol: ScoringProtocol) -> dict[str, torch.Tensor]:
    """Per-image scores of a restored batch under ``protocol``; inputs (N, 3, H, W) in [0, 1], outputs (N,) each.

    Keys: ``protocol.metrics``: ``psnr`` (on RGB, or with ``psnr_on: y_ycrcb`` on the Y of OpenCV's 8-bit YCrCb,
    ``psnr_y``), ``ssim`` (the protocol's ``ssim_variant``), and ``ssim_<variant>`` for every
    extra variant. Under ``align: ecc`` both come from ``realblur_scores`` (RealBlur's aligned, masked protocol).
    """
    pred = QUANTIZERS[protocol.quantize](pred)
    if protocol.align == "ecc":
        pairs = [realblur_scores(p, g) for p, g in zip(pred, gt, strict=True)]
        return {
            "psnr": torch.tensor([p for p, _ in pairs], dtype=torch.float64),
            "ssim": torch.tensor([s for _, s in pairs], dtype=torch.float64),
        }
    if protocol.crop_border:
        b = protocol.crop_border
        pred, gt = pred[..., b:-b, b:-b], gt[..., b:-b, b:-b]
    psnr_fn = psnr_y if protocol.psnr_on == "y_ycrcb" else psnr
    scores = {"psnr": psnr_fn(pred, gt), "ssim": ssim(pred, gt, variant=protocol.ssim_variant)}
    for variant in protocol.extra_ssim_variants:
        scores[f"ssim_{variant}"] = ssim(pred, gt, variant=variant)
    return scores
