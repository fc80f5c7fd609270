"""HINet: a two-stage U-Net with half instance normalisation.

Paper: L. Chen, X. Lu, J. Zhang, X. Chu and C. Chen, "HINet: Half Instance Normalization Network for Image
Restoration", CVPR Workshops 2021 (arXiv:2105.06086).
Upstream: https://github.com/megvii-model/HINet (``basicsr/models/archs/hinet_arch.py``; recipe in
``options/train/GoPro/HINet.yml``, loss in ``basicsr/models/losses/losses.py``). A re-implementation, not a copy.

Two U-Nets in sequence. Stage 1 encodes the blurry image (5 levels, width ``wf * 2**i``), decodes it, and its
supervised attention module ``sam12`` emits a first restoration ``out_1`` and attention-gated features. Stage 2 starts
from the image again, concatenated (``cat12``, 1x1) with those features; each of its encoder levels adds the stage-1
encoder and decoder features of the same level (cross-stage feature fusion, ``csff_enc``/``csff_dec``). Every block
(``UNetConvBlock``) is conv3x3 -> [HIN] -> LeakyReLU(0.2) -> conv3x3 -> LeakyReLU + a 1x1 identity path; the
half-instance-norm (HIN) variant normalises the first half of the channels with an affine ``InstanceNorm2d`` and
passes the other half through. The GoPro model uses HIN at encoder levels 3 and 4 only (``hin_position_left 3``,
``hin_position_right 4``). The output is ``last(x2) + image``.

``hinet`` (wf 64, depth 5) has 88,668,806 parameters with the release's names, shapes and registration order, so
``HINet-GoPro.pth`` (BasicSR format, ``{"params": ...}``) loads strictly through ``models.load_checkpoint``.

Deviations from the release:
    * ``forward`` returns ``out_2`` only; both outputs come from ``forward_train``, whose loss is the release's sum of
      0.5 x ``PSNRLoss`` over ``[out_1, out_2]``.
    * Padding: the release has none (its test config feeds 256 px grids; GoPro frames are multiples of 16); TLC's HINet
      (megvii-research/TLC, the release of Table 1's HINet-Local row) zero-pads the bottom/right to a multiple of 16
      (``check_image_size``). ``forward`` does the same to a multiple of ``2 ** (depth - 1)`` (``pad_mode = "zero"``)
      and crops back; ``pad_mode="reflect"`` is the other mode.
    * Evaluation: the release's GoPro test config scores overlapping 256x256 grids (``grids: true``), the train/test
      mismatch that TLC removes; the harness's official GoPro protocol scores full frames, and the release's protocol
      (``conf/model/hinet.yaml`` ``release.protocols.gopro``: ``tile: 256``) is scored beside it;
      ``benchmark.evaluation.tlc.to_local`` makes ``hinet-Local`` (InstanceNorm2d becomes a local instance norm, as
      TLC's ``HINetLocal``).
    * ``UNetConvBlock.downsample`` is a bool-or-module attribute upstream; here ``downsample`` is the module or
      ``None``, the same state-dict key.
    * The unused ``Subspace``/``skip_blocks`` classes and the never-called ``_initialize`` are not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import psnr_loss

PSNR_LOSS_WEIGHT = 0.5
"""``pixel_opt.loss_weight`` of the GoPro recipe, applied to each of the two outputs."""


class UNetConvBlock(nn.Module):
    """(N, in, H, W) -> (N, out, H, W), plus the stride-2 downsampled copy when ``downsample``.

    Args:
        in_ch, out_ch: widths.
        downsample: add a 4x4 stride-2 conv (no bias); ``forward`` then returns ``(down, full)``.
        relu_slope: LeakyReLU slope (0.2).
        use_csff: add the cross-stage fusion convs; ``forward`` then takes ``enc`` and ``dec`` (N, out, H, W).
        use_hin: half instance normalisation after the first conv.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        downsample: bool,
        relu_slope: float,
        use_csff: bool = False,
        use_hin: bool = False,
    ) -> None:
        super().__init__()
        self.identity = nn.Conv2d(in_ch, out_ch, 1)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.relu_1 = nn.LeakyReLU(relu_slope)
        self.conv_2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.relu_2 = nn.LeakyReLU(relu_slope)
        self.use_csff = downsample and use_csff  # the release only fuses on levels that downsample
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.csff_dec = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm = nn.InstanceNorm2d(out_ch // 2, affine=True) if use_hin else None
        self.downsample = nn.Conv2d(out_ch, out_ch, 4, stride=2, padding=1, bias=False) if downsample else None

    def forward(
        self, x: Tensor, enc: Tensor | None = None, dec: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        out = self.conv_1(x)
        if self.norm is not None:
            first, second = out.chunk(2, dim=1)
            out = torch.cat([self.norm(first), second], dim=1)
        out = self.relu_2(self.conv_2(self.relu_1(out)))
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise RuntimeError("UNetConvBlock: cross-stage features given to a block built without use_csff")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class UNetUpBlock(nn.Module):
    """2x transposed-conv upsampling of (N, in, h, w), concatenated with the skip (N, out, 2h, 2w), then a block."""

    def __init__(self, in_ch: int, out_ch: int, *, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv_block = UNetConvBlock(in_ch, out_ch, downsample=False, relu_slope=relu_slope)

    def forward(self, x: Tensor, bridge: Tensor) -> Tensor:
        out = self.conv_block(torch.cat([self.up(x), bridge], dim=1))
        assert isinstance(out, Tensor)
        return out


class SAM(nn.Module):
    """Supervised attention: features (N, C, H, W) and the input image -> (gated features, image estimate)."""

    def __init__(self, channels: int, *, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=bias)
        self.conv2 = nn.Conv2d(channels, 3, kernel_size, padding=pad, bias=bias)
        self.conv3 = nn.Conv2d(3, channels, kernel_size, padding=pad, bias=bias)

    def forward(self, x: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        estimate = self.conv2(x) + image
        gate = torch.sigmoid(self.conv3(estimate))
        return self.conv1(x) * gate + x, estimate


@dataclass
class HINetTrainOutput(TrainOutput):
    """What ``HINet.forward_train`` returns.

    Attributes:
        restored: ``out_2``, the final restoration (N, 3, H, W).
        stage1: ``out_1``, the first stage's estimate (N, 3, H, W).
    """

    stage1: torch.Tensor


class HINet(DeblurModel):
    """HINet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of ``2 ** (depth - 1)``.

    Args:
        wf: width of the first level; level ``i`` has ``wf * 2**i`` channels.
        depth: number of encoder levels (all but the last downsample).
        relu_slope: LeakyReLU slope.
        hin_left, hin_right: encoder levels (0-based, inclusive) whose first block uses half instance norm.
    """

    pad_mode = "zero"  # TLC's HINet check_image_size (the HINet release feeds 256 px grids, no padding)

    def __init__(
        self, *, wf: int = 64, depth: int = 5, relu_slope: float = 0.2, hin_left: int = 3, hin_right: int = 4
    ) -> None:
        super().__init__()
        if wf <= 0 or depth < 2:
            raise ValueError(f"HINet: wf must be > 0 and depth >= 2, got wf={wf}, depth={depth}")
        self.depth = depth
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        self.conv_01 = nn.Conv2d(3, wf, 3, padding=1)
        self.conv_02 = nn.Conv2d(3, wf, 3, padding=1)
        prev = wf
        for i in range(depth):
            hin = hin_left <= i <= hin_right
            down = i + 1 < depth
            width = wf * 2**i
            self.down_path_1.append(UNetConvBlock(prev, width, downsample=down, relu_slope=relu_slope, use_hin=hin))
            self.down_path_2.append(
                UNetConvBlock(prev, width, downsample=down, relu_slope=relu_slope, use_csff=down, use_hin=hin)
            )
            prev = width
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            width = wf * 2**i
            self.up_path_1.append(UNetUpBlock(prev, width, relu_slope=relu_slope))
            self.up_path_2.append(UNetUpBlock(prev, width, relu_slope=relu_slope))
            self.skip_conv_1.append(nn.Conv2d(width, width, 3, padding=1))
            self.skip_conv_2.append(nn.Conv2d(width, width, 3, padding=1))
            prev = width
        self.sam12 = SAM(prev)
        self.cat12 = nn.Conv2d(prev * 2, prev, 1)
        self.last = nn.Conv2d(prev, 3, 3, padding=1)
        self.pad_multiple = 2 ** (depth - 1)

    def _stages(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(out_1, out_2) for an input already padded to ``pad_multiple``."""
        x1 = self.conv_01(image)
        encs: list[Tensor] = []
        for block in self.down_path_1[:-1]:
            x1, full = block(x1)
            encs.append(full)
        x1 = self.down_path_1[-1](x1)
        decs: list[Tensor] = []
        for up, skip, enc in zip(self.up_path_1, self.skip_conv_1, reversed(encs), strict=True):
            x1 = up(x1, skip(enc))
            decs.append(x1)
        sam_features, out_1 = self.sam12(x1, image)

        x2 = self.cat12(torch.cat([self.conv_02(image), sam_features], dim=1))
        blocks: list[Tensor] = []
        for block, enc, dec in zip(self.down_path_2[:-1], encs, reversed(decs), strict=True):
            x2, full = block(x2, enc, dec)
            blocks.append(full)
        x2 = self.down_path_2[-1](x2)
        for up, skip, full in zip(self.up_path_2, self.skip_conv_2, reversed(blocks), strict=True):
            x2 = up(x2, skip(full))
        return out_1, self.last(x2) + image

    def restore(self, lq: Tensor) -> Tensor:
        return self._stages(lq)[1]

    def check_train_size(self, lq: Tensor) -> None:
        """As ``DeblurModel``'s, and the deepest level must be at least 2x2: instance norm needs more than one pixel."""
        super().check_train_size(lq)
        uses_hin = any(isinstance(m, nn.InstanceNorm2d) for m in self.modules())
        if uses_hin and min(lq.shape[-2:]) < 2 * self.pad_multiple:
            raise ValueError(
                f"{self.registry_name or 'HINet'}: training crop {tuple(lq.shape[-2:])} leaves a 1x1 map at the "
                f"deepest level, where instance norm is undefined; use a crop of at least {2 * self.pad_multiple}"
            )

    def forward_train(self, lq: Tensor, gt: Tensor) -> HINetTrainOutput:
        self.check_train_size(lq)
        out_1, out_2 = self._stages(lq)
        return HINetTrainOutput(restored=out_2, stage1=out_1)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's objective: ``0.5 * PSNRLoss(out_1) + 0.5 * PSNRLoss(out_2)``."""
        if not isinstance(out, HINetTrainOutput):
            raise TypeError(f"HINet.loss needs the HINetTrainOutput of forward_train, got {type(out).__name__}")
        stage1 = PSNR_LOSS_WEIGHT * psnr_loss(out.stage1, gt)
        stage2 = PSNR_LOSS_WEIGHT * psnr_loss(out.restored, gt)
        return {"psnr_loss_stage1": stage1, "psnr_loss_stage2": stage2, "total": stage1 + stage2}


@register_model
def hinet(**overrides: Any) -> HINet:
    """HINet-GoPro (wf 64, depth 5, HIN at levels 3-4): 88,668,806 parameters (TLC README: GoPro 32.71 dB)."""
    return HINet(**{"wf": 64, "depth": 5, "hin_left": 3, "hin_right": 4, **overrides})


@register_model
def hinet_tiny(**overrides: Any) -> HINet:
    """HINet at CPU size for smoke runs and tests: wf 8, depth 4, HIN at the two deepest levels, 347,222 parameters.

    Same blocks, two-stage loss and TLC path as ``hinet``; not a published model.
    """
    return HINet(**{"wf": 8, "depth": 4, "hin_left": 2, "hin_right": 3, **overrides})
