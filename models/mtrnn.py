"""MT-RNN: the multi-temporal recurrent network, one U-Net-like cell run for a fixed number of iterations.

Paper: D. Park, D. U. Kang, J. Kim and S. Y. Chun, "Multi-Temporal Recurrent Neural Networks for Progressive
Non-Uniform Single Image Deblurring with Incremental Temporal Training", ECCV 2020 (arXiv:1911.07410).
Upstream: https://github.com/Dong1P/MTRNN at HEAD e27c29b (README update). The network is ``mtrnn.py`` (class
``MTRNN``), the recurrence the loop of ``test.py`` (l. 21-36); the GoPro weights are ``model_best.pt`` in the
repository root, a bare state dict (``test.py`` l. 14). The README's "Train: Comming Soon" was never followed up: the
release has no training code. This file is a re-implementation, not a copy.

One cell (``MTRNN.multi`` in the release), widths c, 2c, 4c (c = 32): the blurry input and the current estimate,
both shifted by the DIV2K RGB mean (``sub_mean``, a frozen 1x1 convolution), are concatenated (6 channels) and
encoded in three stages (``conv1_*`` at full size; ``conv2_*`` and ``conv3_*`` entered by a stride-2 3x3 convolution
with LeakyReLU(0.1)); at the second and third stage the entry's output is concatenated with a recurrent feature map
and fused by a 1x1 convolution (``conv2_c``, ``conv3_c``). Three more residual blocks at 4c (``conv4_*``) give the
recurrent map ``feature_2``; a 4x4 stride-2 transposed convolution, a 1x1 fusion with the encoder's skip and three
residual blocks (``conv5_*``) give ``feature_1``; the same again at c (``conv6_*``) and a 3x3 convolution to RGB
(``img_prd``) give a residual that is added to the (mean-shifted) blurry input, not to the current estimate; then the
mean is added back (``add_mean``). Residual blocks are conv3x3-LeakyReLU(0.1)-conv3x3 plus identity.

The recurrence (``test.py``): the estimate starts as the blurry image itself; ``feature_1`` (2c channels, H/2) and
``feature_2`` (4c, H/4) start as the 3-channel image too, which the cell detects by ``shape[1] == 3`` and replaces
with its own entry output, so that the first iteration fuses that map with itself. Each iteration feeds back the new
estimate (unclamped, 0-255 scale) and the two feature maps; the last iteration's estimate is the restoration (the
release saves every iteration's, ``test_output/00`` ... ``06``, ``06`` being the final one). The release runs 6
iterations (``test.py`` l. 16); ``iterations`` is a constructor argument.

Parameters: 2,635,547 (``mtrnn``, c = 32; 24 of them are the two frozen MeanShift convolutions, which are in the
release's state dict), 165,851 (``mtrnn_tiny``, c = 8). Registration order and names are the release's, so
``model_best.pt`` loads with ``load_state_dict(strict=True)``.

Deviations from the release:
    * Input scaling: the release feeds 0-255 floats (``imageio.imread`` -> ``float()``, ``test.py`` l. 20-22) and
      returns 0-255; ``restore`` multiplies the [0, 1] input by 255 and divides the output by 255. The output is not
      clamped (the release clamps only when saving: ``clamp(0, 255).round()``, ``test.py`` l. 42).
    * Padding: the release pads nothing; its two stride-2 convolutions and two transposed convolutions need H and W
      to be multiples of 4 (otherwise the skip concatenations fail), which GoPro's 1280x720 frames are.
      ``pad_multiple = 4``; ``forward`` reflect-pads (``pad_mode = "reflect"``) the bottom/right and crops back.
    * The first iteration's "is it a 3-channel image?" test on the feature maps is an explicit ``None`` here (same
      arithmetic); the unused ``nn.Upsample`` (``self.up``) and ``nn.ReLU`` (``act``) of the release hold no weights
      and are left out. LeakyReLUs are not in-place (same values).
    * Training: the release publishes none (README: "Coming Soon"). The paper's incremental temporal training
      supervises each iteration with a progressively sharper "MT level" target built from GoPro's high-speed frames;
      the harness has only the blurry/sharp pairs, so ``loss`` supervises every iteration with the sharp frame (L1,
      an assumption: no release code defines it). Between iterations the carried estimate and feature maps are
      detached, as the release's loop does (``.data``, ``test.py`` l. 30-33).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput

RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""The DIV2K RGB mean the release subtracts (x 255) before the cell and adds back after it (``mtrnn.py`` l. 52)."""

RGB_RANGE = 255.0
"""The release works on 0-255 images (``MeanShift(255, ...)``; ``test.py`` feeds ``imageio`` uint8 as float)."""

STRIDE = 4
"""The cell's total downsampling (two stride-2 convolutions): H and W must be multiples of it."""

NEGATIVE_SLOPE = 0.1
"""The release's LeakyReLU slope, everywhere."""


def _conv(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution + LeakyReLU(0.1): the release's ``conv`` (key ``<name>.0``)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2),
        nn.LeakyReLU(NEGATIVE_SLOPE),
    )


def _conv_norelu(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    """A bare convolution wrapped in a Sequential: the release's ``conv_norelu`` (key ``<name>.0``)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=(kernel_size - 1) // 2))


def _upconv(c_in: int, c_out: int) -> nn.Sequential:
    """4x4 stride-2 transposed convolution + LeakyReLU(0.1): the release's ``upconv`` (x2 in H and W)."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE))


class ResnetBlock(nn.Module):
    """x + conv3x3(LeakyReLU(conv3x3(x))) at constant width; the release's ``ResnetBlock`` (keys ``stem.0``,
    ``stem.2``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.stem(x) + x


class MeanShift(nn.Conv2d):
    """Frozen 1x1 convolution adding ``sign`` x 255 x the RGB mean; the release's ``MeanShift`` (std 1).

    Its weight and bias are in the release's state dict (and count as parameters) but get ``requires_grad=False``.
    """

    def __init__(self, sign: float) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * RGB_RANGE * torch.tensor(RGB_MEAN))
        for p in self.parameters():
            p.requires_grad = False


@dataclass
class MTRNNTrainOutput(TrainOutput):
    """``restored`` is the last iteration's estimate; ``iterations`` every iteration's, first to last ([0, 1] scale,
    each computed from detached inputs, as the release's loop carries them)."""

    iterations: list[Tensor]


class MTRNN(DeblurModel):
    """MT-RNN: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 4 (``forward`` pads). Module names are the release's.

    Args:
        channels: width of the first stage (32 in the release); the deeper stages have 2x and 4x.
        iterations: how many times the cell runs; the last estimate is the output (6 in the release's ``test.py``).
    """

    pad_multiple = STRIDE
    pad_mode = "reflect"

    def __init__(self, *, channels: int = 32, iterations: int = 6) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"MTRNN: channels must be >= 1, got {channels}")
        if iterations < 1:
            raise ValueError(f"MTRNN: iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        ch1, ch2, ch3 = channels, 2 * channels, 4 * channels
        # Registered in the release's order (mtrnn.py l. 54-98), so that state_dict() lists the keys as it does.
        self.sub_mean = MeanShift(-1.0)
        self.conv1_1 = _conv_norelu(6, ch1)
        self.conv1_2 = ResnetBlock(ch1)
        self.conv1_3 = ResnetBlock(ch1)
        self.conv1_4 = ResnetBlock(ch1)
        self.conv2_1 = _conv(ch1, ch2, stride=2)
        self.conv2_c = _conv_norelu(2 * ch2, ch2, kernel_size=1)
        self.conv2_2 = ResnetBlock(ch2)
        self.conv2_3 = ResnetBlock(ch2)
        self.conv2_4 = ResnetBlock(ch2)
        self.conv3_1 = _conv(ch2, ch3, stride=2)
        self.conv3_c = _conv_norelu(2 * ch3, ch3, kernel_size=1)
        self.conv3_2 = ResnetBlock(ch3)
        self.conv3_3 = ResnetBlock(ch3)
        self.conv3_4 = ResnetBlock(ch3)
        self.conv4_1 = ResnetBlock(ch3)
        self.conv4_2 = ResnetBlock(ch3)
        self.conv4_3 = ResnetBlock(ch3)
        self.conv5_1 = _upconv(ch3, ch2)
        self.conv5_c = _conv_norelu(2 * ch2, ch2, kernel_size=1)
        self.conv5_2 = ResnetBlock(ch2)
        self.conv5_3 = ResnetBlock(ch2)
        self.conv5_4 = ResnetBlock(ch2)
        self.conv6_1 = _upconv(ch2, ch1)
        self.conv6_c = _conv_norelu(2 * ch1, ch1, kernel_size=1)
        self.conv6_2 = ResnetBlock(ch1)
        self.conv6_3 = ResnetBlock(ch1)
        self.conv6_4 = ResnetBlock(ch1)
        self.img_prd = _conv_norelu(ch1, 3)
        self.add_mean = MeanShift(1.0)

    def cell(
        self, x_in: Tensor, x_d: Tensor, feature_1: Tensor | None, feature_2: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One iteration on mean-shifted 0-255 tensors (the release's ``multi``): the blurry input ``x_in``, the
        current estimate ``x_d`` and the recurrent maps (``None`` on the first iteration: the entry output itself
        is used) -> (the new estimate's residual added to ``x_in``, ``feature_1``, ``feature_2``)."""
        conv1 = self.conv1_4(self.conv1_3(self.conv1_2(self.conv1_1(torch.cat([x_in, x_d], 1)))))
        conv2 = self.conv2_1(conv1)
        conv2 = self.conv2_c(torch.cat([conv2, conv2 if feature_1 is None else feature_1], 1))
        conv2 = self.conv2_4(self.conv2_3(self.conv2_2(conv2)))
        conv3 = self.conv3_1(conv2)
        conv3 = self.conv3_c(torch.cat([conv3, conv3 if feature_2 is None else feature_2], 1))
        conv3 = self.conv3_4(self.conv3_3(self.conv3_2(conv3)))
        feature_2_out = self.conv4_3(self.conv4_2(self.conv4_1(conv3)))
        conv5 = self.conv5_c(torch.cat([self.conv5_1(feature_2_out), conv2], 1))
        feature_1_out = self.conv5_4(self.conv5_3(self.conv5_2(conv5)))
        conv6 = self.conv6_c(torch.cat([self.conv6_1(feature_1_out), conv1], 1))
        conv6 = self.conv6_4(self.conv6_3(self.conv6_2(conv6)))
        return self.img_prd(conv6) + x_in, feature_1_out, feature_2_out

    def _run(self, lq: Tensor, detach: bool) -> list[Tensor]:
        """Every iteration's estimate, [0, 1] scale; ``detach`` cuts the graph between iterations (``.data``)."""
        x = lq * RGB_RANGE
        x_in = self.sub_mean(x)
        x_d, feature_1, feature_2 = x, None, None
        estimates = []
        for _ in range(self.iterations):
            if detach and feature_1 is not None:
                x_d, feature_1, feature_2 = x_d.detach(), feature_1.detach(), feature_2.detach()
            out, feature_1, feature_2 = self.cell(x_in, self.sub_mean(x_d), feature_1, feature_2)
            x_d = self.add_mean(out)
            estimates.append(x_d / RGB_RANGE)
        return estimates

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> the last iteration's estimate (the release's ``test.py`` loop)."""
        return self._run(lq, detach=True)[-1]

    def forward_train(self, lq: Tensor, gt: Tensor) -> MTRNNTrainOutput:
        """(N, 3, H, W) crops, H and W multiples of 4 -> every iteration's estimate (``gt`` is unused)."""
        self.check_train_size(lq)
        estimates = self._run(lq, detach=True)
        return MTRNNTrainOutput(restored=estimates[-1], iterations=estimates)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The mean over iterations of the L1 distance of each estimate to ``gt`` (the release defines no loss: see
        the module docstring); ``l1_final`` is the last iteration's term, logged."""
        if not isinstance(out, MTRNNTrainOutput):
            raise TypeError(f"MTRNN.loss needs forward_train's MTRNNTrainOutput, got {type(out).__name__}")
        terms = [F.l1_loss(est, gt) for est in out.iterations]
        total = torch.stack(terms).mean()
        return {"l1_final": terms[-1].detach(), "total": total}


@register_model
def mtrnn(**overrides: Any) -> MTRNN:
    """MT-RNN (release ``model_best.pt``): width 32, 6 iterations, 2,635,547 parameters."""
    return MTRNN(**{"channels": 32, "iterations": 6, **overrides})


@register_model
def mtrnn_tiny(**overrides: Any) -> MTRNN:
    """MT-RNN at CPU size for smoke runs and tests: width 8, 6 iterations, 165,851 parameters; not a published model."""
    return MTRNN(**{"channels": 8, "iterations": 6, **overrides})
