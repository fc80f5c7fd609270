"""NAFNet: a nonlinear-activation-free U-Net of simple gated blocks.

Paper: L. Chen, X. Chu, X. Zhang and J. Sun, "Simple Baselines for Image Restoration", ECCV 2022 (arXiv:2204.04676).
Upstream: https://github.com/megvii-research/NAFNet (``basicsr/models/archs/NAFNet_arch.py``, ``arch_util.py``;
recipes in ``options/train/GoPro/NAFNet-width{32,64}.yml``). This file is a re-implementation, not a copy.

A U-Net whose every block (``NAFBlock``) is: channel LayerNorm -> 1x1 conv (x2 width) -> 3x3 depthwise conv ->
SimpleGate (split the channels in two halves and multiply them) -> simplified channel attention (global average
pool -> 1x1 conv, multiplied in) -> 1x1 conv, added with a learned per-channel scale ``beta``; then a gated
feed-forward part (LayerNorm -> 1x1 -> SimpleGate -> 1x1) added with scale ``gamma``. Downsampling is a 2x2
stride-2 conv doubling the width, upsampling a 1x1 conv + PixelShuffle halving it; skips are added, and the output
is a residual on the input.

The GoPro models are ``width`` 32 or 64 with encoder blocks (1, 1, 1, 28), one middle block and decoder blocks
(1, 1, 1, 1): ``nafnet_w32`` has 17,111,907 parameters and ``nafnet_w64`` 67,888,835. Module names, shapes and
registration order are the release's, so ``NAFNet-GoPro-width{32,64}.pth`` (BasicSR format, ``{"params": ...}``)
loads strictly through ``models.load_checkpoint``.

Deviations from the release:
    * ``LayerNorm2d``: the release writes a custom ``autograd.Function`` with a hand-derived backward to save memory;
      here the same forward (per-pixel mean and biased variance over channels, eps 1e-6) is plain autograd ops, so
      gradients are torch's own. The values are identical.
    * Padding: as the release, ``forward`` zero-pads the bottom/right to a multiple of 16 (``check_image_size``;
      ``pad_mode = "zero"``, ``pad_mode="reflect"`` the other mode) and crops back. GoPro's 1280x720 frames need none.
    * TLC: the release builds ``NAFNetLocal`` (its test configs score GoPro with it); here
      ``benchmark.evaluation.tlc.to_local`` converts the trained model instead, with the same 1.5x window.
    * Dropout (``drop_out_rate``) is 0 in every GoPro config and is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import psnr_loss


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of (N, C, H, W), per pixel, with affine ``weight``/``bias`` of size C."""

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """(N, 2C, H, W) -> (N, C, H, W): the product of the two channel halves (NAFNet's replacement for GELU)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """The NAFNet block at constant width ``c``: (N, c, H, W) -> (N, c, H, W); see the module docstring."""

    def __init__(self, c: int, *, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        # Registration order is the release's (conv1..3, sca, sg, conv4, conv5, norm1, norm2; beta and gamma are
        # the block's own parameters and come first in its state dict).
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        # Zero-initialised, as released: every block starts as the identity.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


@dataclass
class NAFNetTrainOutput(TrainOutput):
    """``NAFNet.forward_train``: the restoration only (NAFNet has a single output)."""


class NAFNet(DeblurModel):
    """NAFNet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of ``2 ** len(enc_blocks)`` (16 for the GoPro models).

    Args:
        width: channels at full resolution (32 or 64 for the released GoPro models).
        enc_blocks: NAFBlocks per encoder level; each level is followed by a downsampling that doubles the width.
        middle_blocks: NAFBlocks at the bottom.
        dec_blocks: NAFBlocks per decoder level, coarse to fine; as many as ``enc_blocks``.
    """

    pad_mode = "zero"  # the release's check_image_size

    def __init__(
        self,
        *,
        width: int = 32,
        enc_blocks: tuple[int, ...] = (1, 1, 1, 28),
        middle_blocks: int = 1,
        dec_blocks: tuple[int, ...] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if width <= 0 or middle_blocks < 0:
            raise ValueError(f"NAFNet: width must be > 0 and middle_blocks >= 0, got {width}, {middle_blocks}")
        if len(enc_blocks) != len(dec_blocks) or not enc_blocks:
            raise ValueError(
                f"NAFNet: enc_blocks {enc_blocks} and dec_blocks {dec_blocks} need the same, non-zero length"
            )
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        # Re-assigning keeps the release's registration slot (after ``decoders``), hence the key order.
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blocks)])
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
        self.pad_multiple = 2 ** len(enc_blocks)

    def restore(self, lq: Tensor) -> Tensor:
        x = self.intro(lq)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(up(x) + skip)
        return self.ending(x) + lq

    def forward_train(self, lq: Tensor, gt: Tensor) -> NAFNetTrainOutput:
        self.check_train_size(lq)
        return NAFNetTrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's ``PSNRLoss`` (weight 1): minus the batch-mean PSNR in dB."""
        value = psnr_loss(out.restored, gt)
        return {"psnr_loss": value, "total": value}


@register_model
def nafnet_w32(**overrides: Any) -> NAFNet:
    """NAFNet-GoPro-width32: 17,111,907 parameters (README: GoPro 32.87 dB / 0.9606 with TLC)."""
    return NAFNet(**{"width": 32, **overrides})


@register_model
def nafnet_w64(**overrides: Any) -> NAFNet:
    """NAFNet-GoPro-width64: 67,888,835 parameters (README: GoPro 33.71 dB / 0.9668 with TLC)."""
    return NAFNet(**{"width": 64, **overrides})


@register_model
def nafnet_tiny(**overrides: Any) -> NAFNet:
    """NAFNet at CPU size for smoke runs and tests: width 8, one block per level, 290,715 parameters.

    Same block, losses and TLC path as the released models; not a published model.
    """
    return NAFNet(
        **{"width": 8, "enc_blocks": (1, 1, 1, 1), "middle_blocks": 1, "dec_blocks": (1, 1, 1, 1), **overrides}
    )
