"""PSS-NSC: multi-scale deblurring with parameter-selective sharing and nested skip connections (Gao et al. 2019).

Paper: H. Gao, X. Tao, X. Shen and J. Jia, "Dynamic Scene Deblurring with Parameter Selective Sharing and Nested
Skip Connections", CVPR 2019. Upstream: https://github.com/firenxygao/deblur at 5791a82 (TensorFlow 1.7):
``model.py`` (``DEBLUR.generator``, ``forward``), ``run_model.py``; GoPro weights ``checkpoints/default/
deblur_model.{index,data-00000-of-00001,meta}`` committed to the repository (``alldata``: GoPro plus the authors' own
data). This file is a re-implementation, not a copy; the checkpoint loads through ``models.tfcheckpoint``
(``checkpoint=release`` or ``python -m benchmark.convert``). The release has no training code.

Architecture: 3 scales, factor 0.5, coarse to fine, as SRN (``models.srn``): the blurry input and the previous
estimate, resized (TF 1.x bilinear), concatenated. Per scale (scope suffix ``_<scale>``, not shared): ``enc1_1``,
``enc2_1``, ``enc3_1`` (3x3 convs to c, 2c stride 2, 4c stride 2), ``dec2_3``, ``dec1_3`` (4x4 stride-2 transposed)
and ``dec1_0`` (3x3 to one channel). Shared by all scales (the "selective sharing"): six ``DenseBlock``s ``enc1_2``,
``enc2_2``, ``enc3_2``, ``dec3_2``, ``dec2_2``, ``dec1_2``, each applied TWICE in a row at its stage (the release
calls each scope twice under ``AUTO_REUSE``). A ``DenseBlock`` (the "nested skip connections") holds four
conv-ReLU-conv units ``d1`` ... ``d4`` (3x3) with ``d_k`` applied to ``x + d_1 + ... + d_{k-1}`` and the block
returning ``x + d_1 + ... + d_4``. Decoder stages add the encoder's skip after the transposed convolution; the scale's
output is ``dec1_0(...) + blurry input`` (residual). c = 32; TensorFlow's 'SAME' padding throughout. One channel:
R, G and B are restored as three gray images (the release's ``forward`` stacks them into the batch).

Parameters: 3,871,715 (``pssnsc``), 61,279 (``pssnsc_tiny``, c = 4); the release's checkpoint adds the step counter
``Variable`` (3,871,716 entries in all) and Adam's slots, which the conversion skips.

Deviations from the release:
    * Input size: the release's placeholder is fixed (``--max_height 720 --max_width 1280``) and ``forward`` edge-pads
      each image at the bottom/right to it (portrait images transposed first, larger ones resized bicubically).
      ``forward`` here edge-pads to the next multiple of 16 (``pad_mode = "replicate"``): identical on GoPro's and
      HIDE's 1280x720 frames; no transposition or resizing.
    * Rounding: ``im2uint8`` truncates (``saves: uint8_floor``).
    * Training: the release publishes none. ``loss`` is SRN's multi-scale MSE, an assumption (the method builds on
      SRN's scheme) recorded in ``conf/train/pssnsc.yaml``, not the authors' code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.tfops import SameConv2d, from_slim, resize_bilinear_legacy, same_conv_transpose

N_LEVELS = 3
"""Scales, coarse to fine, factor 0.5 (``DEBLUR.__init__``)."""


class Unit(nn.Module):
    """``conv2(relu(conv1(x)))``, 3x3, no identity: the release's inner ``ResnetBlock`` (scopes conv1, conv2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = SameConv2d(channels, channels, 3)
        self.conv2 = SameConv2d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class DenseBlock(nn.Module):
    """Four nested units ``d1`` ... ``d4``: the release's ``DenseBlock`` (see the module docstring)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.d1, self.d2, self.d3, self.d4 = (Unit(channels) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        total = x
        for unit in (self.d1, self.d2, self.d3, self.d4):
            total = total + unit(total)
        return total


@dataclass
class PSSNSCTrainOutput(TrainOutput):
    """``restored`` is the finest scale's output (N, 3, H, W); ``scales`` every scale's, coarse to fine."""

    scales: list[Tensor]


class PSSNSC(DeblurModel):
    """PSS-NSC: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs multiples of 16 (``forward`` edge-pads). Module names are the release's variable scopes.

    Args:
        channels: width c of the first stage (32); the others are 2c and 4c.
    """

    pad_multiple = 16
    pad_mode = "replicate"

    def __init__(self, *, channels: int = 32) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"PSSNSC: channels must be >= 1, got {channels}")
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        for i in range(N_LEVELS):  # per-scale layers, named as the release's '<scope>_%d' % i
            setattr(self, f"enc1_1_{i}", SameConv2d(2, c1, 3))
            setattr(self, f"enc2_1_{i}", SameConv2d(c1, c2, 3, stride=2))
            setattr(self, f"enc3_1_{i}", SameConv2d(c2, c3, 3, stride=2))
            setattr(self, f"dec2_3_{i}", same_conv_transpose(c3, c2))
            setattr(self, f"dec1_3_{i}", same_conv_transpose(c2, c1))
            setattr(self, f"dec1_0_{i}", SameConv2d(c1, 1, 3))
        self.enc1_2, self.dec1_2 = DenseBlock(c1), DenseBlock(c1)
        self.enc2_2, self.dec2_2 = DenseBlock(c2), DenseBlock(c2)
        self.enc3_2, self.dec3_2 = DenseBlock(c3), DenseBlock(c3)

    def _scale(self, i: int, blur: Tensor, pred: Tensor) -> Tensor:
        """Scale ``i`` on (N, 1, h, w) blur and estimate -> the new estimate (``generator``'s loop body)."""
        layer = lambda name: getattr(self, f"{name}_{i}")  # noqa: E731 - the per-scale modules
        twice = lambda block, x: block(block(x))  # noqa: E731 - each shared scope is called twice
        conv1 = twice(self.enc1_2, F.relu(layer("enc1_1")(torch.cat([blur, pred], 1))))
        conv2 = twice(self.enc2_2, F.relu(layer("enc2_1")(conv1)))
        conv3 = twice(self.enc3_2, F.relu(layer("enc3_1")(conv2)))
        deconv = twice(self.dec3_2, conv3)
        deconv = twice(self.dec2_2, F.relu(layer("dec2_3")(deconv)) + conv2)
        deconv = twice(self.dec1_2, F.relu(layer("dec1_3")(deconv)) + conv1)
        return layer("dec1_0")(deconv) + blur

    def scales(self, x: Tensor) -> list[Tensor]:
        """(N, 1, H, W), H and W multiples of 16 -> every scale's estimate, coarse to fine."""
        h, w = x.shape[-2:]
        pred, outs = x, []
        for i in range(N_LEVELS):
            factor = 0.5 ** (N_LEVELS - i - 1)
            size = (round(h * factor), round(w * factor))
            pred = self._scale(i, resize_bilinear_legacy(x, size), resize_bilinear_legacy(pred.detach(), size))
            outs.append(pred)
        return outs

    def _run(self, lq: Tensor) -> list[Tensor]:
        n = lq.shape[0]
        outs = self.scales(lq.reshape(n * 3, 1, *lq.shape[-2:]))
        return [o.reshape(n, 3, *o.shape[-2:]) for o in outs]

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> the finest scale's output (the release's ``deblur[-1]``)."""
        return self._run(lq)[-1]

    def forward_train(self, lq: Tensor, gt: Tensor) -> PSSNSCTrainOutput:
        """(N, 3, H, W) crops, multiples of 16 -> every scale's estimate (``gt`` is unused)."""
        self.check_train_size(lq)
        outs = self._run(lq)
        return PSSNSCTrainOutput(restored=outs[-1], scales=outs)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """Sum over scales of the MSE to ``gt`` resized to each scale (SRN's; the release has no training code)."""
        if not isinstance(out, PSSNSCTrainOutput):
            raise TypeError(f"PSSNSC.loss needs forward_train's PSSNSCTrainOutput, got {type(out).__name__}")
        terms = [F.mse_loss(o, resize_bilinear_legacy(gt, o.shape[-2:])) for o in out.scales]
        return {"mse_fine": terms[-1].detach(), "total": torch.stack(terms).sum()}

    def convert_release(self, tensors: Mapping[str, np.ndarray], source: str) -> dict[str, Tensor]:
        """The release's TF-slim variables (scope ``g_net``) -> this model's state dict (``models.tfops.from_slim``)."""
        return from_slim(tensors, self.state_dict(), scope="g_net", source=source)


@register_model
def pssnsc(**overrides: Any) -> PSSNSC:
    """PSS-NSC (release ``checkpoints/default``, GoPro): c = 32, 3,871,715 parameters."""
    return PSSNSC(**{"channels": 32, **overrides})


@register_model
def pssnsc_tiny(**overrides: Any) -> PSSNSC:
    """PSS-NSC at CPU size for smoke runs and tests: c = 4, 61,279 parameters; not a published model."""
    return PSSNSC(**{"channels": 4, **overrides})
