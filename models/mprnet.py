"""MPRNet: multi-stage progressive restoration (the deblurring model).

Paper: S. W. Zamir, A. Arora, S. Khan, M. Hayat, F. S. Khan, M.-H. Yang and L. Shao, "Multi-Stage Progressive Image
Restoration", CVPR 2021 (arXiv:2102.02808).
Upstream: https://github.com/swz30/MPRNet (``Deblurring/MPRNet.py``; recipe in ``Deblurring/train.py``,
``training.yml`` and ``losses.py``). A re-implementation, not a copy.

Three stages on a multi-patch hierarchy. Stage 1 runs an encoder-decoder of channel-attention blocks (CAB) on the
four quarters of the image (encoder features of left and right quarters are concatenated along the width before the
decoder, so stage 1 decodes two halves); its supervised attention module ``sam12`` gives a stage-1 image and gated
features. Stage 2 does the same on the top and bottom halves, fusing stage 1's encoder and decoder features into its
encoder (``csff_*``), and ``sam23`` passes on to stage 3, an original-resolution subnetwork (``stage3_orsnet``: three
ORBs of ``num_cab`` CABs each, fed with the stage-2 features upsampled). ``tail`` gives the final residual.

The deblurring model is ``MPRNet(n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32, num_cab=8, kernel_size=3,
reduction=4, bias=False)``. Every CAB and shallow block uses one and the same ``nn.PReLU`` instance, as released:
``parameters()`` counts it once (20,127,073 parameters) while the state dict lists it under each of its 55 places,
which is what ``model_deblurring.pth`` holds (``{"state_dict": ...}``, possibly with DataParallel's ``module.``
prefix; ``models.load_checkpoint`` reads it strictly). Names, shapes and registration order are the release's.

Deviations from the release:
    * ``forward`` returns the stage-3 image only; ``forward_train`` returns all three, and ``loss`` is the release's
      ``sum_s Charbonnier(s) + 0.05 * sum_s Edge(s)``.
    * Padding: the release reflect-pads to a multiple of 8 for RealBlur only (``test.py``) and otherwise splits odd
      sizes unevenly; ``forward`` here reflect-pads every input to a multiple of 8 and crops back (GoPro and HIDE
      frames are multiples of 8, so their numbers are unaffected).
    * ``Upsample`` layers are kept as modules (they hold no state) so that the indices in the key names match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import charbonnier, edge_loss

EDGE_LOSS_WEIGHT = 0.05
"""``loss = char + 0.05 * edge`` (``Deblurring/train.py``)."""


def _conv(in_ch: int, out_ch: int, kernel_size: int, *, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention: ``x * sigmoid(W2 relu(W1 mean_hw(x)))`` on (N, C, H, W); ``reduction`` shrinks W1."""

    def __init__(self, channels: int, *, reduction: int, bias: bool) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class CAB(nn.Module):
    """Channel-attention block: ``x + CA(conv(act(conv(x))))`` at constant width; ``act`` is the shared PReLU."""

    def __init__(self, channels: int, *, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> None:
        super().__init__()
        # CA before body: the release's registration order (hence state-dict order).
        self.CA = CALayer(channels, reduction=reduction, bias=bias)
        self.body = nn.Sequential(
            _conv(channels, channels, kernel_size, bias=bias), act, _conv(channels, channels, kernel_size, bias=bias)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.CA(self.body(x)) + x


class SAM(nn.Module):
    """Supervised attention: features (N, C, H, W) and the input image -> (gated features, image estimate)."""

    def __init__(self, channels: int, *, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size, bias=bias)
        self.conv2 = _conv(channels, 3, kernel_size, bias=bias)
        self.conv3 = _conv(3, channels, kernel_size, bias=bias)

    def forward(self, x: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        estimate = self.conv2(x) + image
        return self.conv1(x) * torch.sigmoid(self.conv3(estimate)) + x, estimate


class DownSample(nn.Module):
    """Bilinear 0.5x, then a 1x1 conv widening ``in_ch`` by ``extra``."""

    def __init__(self, in_ch: int, extra: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(in_ch, in_ch + extra, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear 2x, then a 1x1 conv narrowing ``in_ch + extra`` to ``in_ch``; ``SkipUpSample`` adds the skip."""

    def __init__(self, in_ch: int, extra: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_ch + extra, in_ch, 1, bias=False),
        )

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = self.up(x)
        return x if skip is None else x + skip


SkipUpSample = UpSample  # the release's SkipUpSample is UpSample plus the skip addition: same layers, same keys


class Encoder(nn.Module):
    """Three levels of two CABs (widths n, n+s, n+2s); with ``csff``, previous-stage features are fused per level."""

    def __init__(
        self, n_feat: int, *, kernel_size: int, reduction: int, act: nn.Module, bias: bool, scale: int, csff: bool
    ) -> None:
        super().__init__()
        widths = (n_feat, n_feat + scale, n_feat + 2 * scale)

        def cabs(c: int) -> nn.Sequential:
            return nn.Sequential(
                *[CAB(c, kernel_size=kernel_size, reduction=reduction, bias=bias, act=act) for _ in range(2)]
            )

        self.encoder_level1 = cabs(widths[0])
        self.encoder_level2 = cabs(widths[1])
        self.encoder_level3 = cabs(widths[2])
        self.down12 = DownSample(widths[0], scale)
        self.down23 = DownSample(widths[1], scale)
        self.csff = csff
        if csff:
            for i, c in enumerate(widths, start=1):
                setattr(self, f"csff_enc{i}", nn.Conv2d(c, c, 1, bias=bias))
            for i, c in enumerate(widths, start=1):
                setattr(self, f"csff_dec{i}", nn.Conv2d(c, c, 1, bias=bias))

    def _fuse(self, level: int, x: Tensor, enc: list[Tensor] | None, dec: list[Tensor] | None) -> Tensor:
        if enc is None or dec is None:
            return x
        i = level - 1
        return x + getattr(self, f"csff_enc{level}")(enc[i]) + getattr(self, f"csff_dec{level}")(dec[i])

    def forward(self, x: Tensor, enc: list[Tensor] | None = None, dec: list[Tensor] | None = None) -> list[Tensor]:
        e1 = self._fuse(1, self.encoder_level1(x), enc, dec)
        e2 = self._fuse(2, self.encoder_level2(self.down12(e1)), enc, dec)
        e3 = self._fuse(3, self.encoder_level3(self.down23(e2)), enc, dec)
        return [e1, e2, e3]


class Decoder(nn.Module):
    """Mirror of ``Encoder``: three levels of two CABs, skips through a CAB (``skip_attn*``) and ``up*`` blocks."""

    def __init__(
        self, n_feat: int, *, kernel_size: int, reduction: int, act: nn.Module, bias: bool, scale: int
    ) -> None:
        super().__init__()
        widths = (n_feat, n_feat + scale, n_feat + 2 * scale)

        def cab(c: int) -> CAB:
            return CAB(c, kernel_size=kernel_size, reduction=reduction, bias=bias, act=act)

        self.decoder_level1 = nn.Sequential(cab(widths[0]), cab(widths[0]))
        self.decoder_level2 = nn.Sequential(cab(widths[1]), cab(widths[1]))
        self.decoder_level3 = nn.Sequential(cab(widths[2]), cab(widths[2]))
        self.skip_attn1 = cab(widths[0])
        self.skip_attn2 = cab(widths[1])
        self.up21 = SkipUpSample(widths[0], scale)
        self.up32 = SkipUpSample(widths[1], scale)

    def forward(self, outs: list[Tensor]) -> list[Tensor]:
        e1, e2, e3 = outs
        d3 = self.decoder_level3(e3)
        d2 = self.decoder_level2(self.up32(d3, self.skip_attn2(e2)))
        d1 = self.decoder_level1(self.up21(d2, self.skip_attn1(e1)))
        return [d1, d2, d3]


class ORB(nn.Module):
    """Original-resolution block: ``x + conv(CAB^num_cab(x))`` (the closing conv has no bias, as released)."""

    def __init__(self, channels: int, *, kernel_size: int, reduction: int, act: nn.Module, bias: bool, num_cab: int):
        super().__init__()
        body: list[nn.Module] = [
            CAB(channels, kernel_size=kernel_size, reduction=reduction, bias=bias, act=act) for _ in range(num_cab)
        ]
        body.append(_conv(channels, channels, kernel_size))
        self.body = nn.Sequential(*body)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by the fused stage-2 encoder/decoder features."""

    def __init__(
        self,
        n_feat: int,
        *,
        scale_ors: int,
        kernel_size: int,
        reduction: int,
        act: nn.Module,
        bias: bool,
        scale_unet: int,
        num_cab: int,
    ) -> None:
        super().__init__()
        c = n_feat + scale_ors
        kw = {"kernel_size": kernel_size, "reduction": reduction, "act": act, "bias": bias, "num_cab": num_cab}
        self.orb1 = ORB(c, **kw)
        self.orb2 = ORB(c, **kw)
        self.orb3 = ORB(c, **kw)
        self.up_enc1 = UpSample(n_feat, scale_unet)
        self.up_dec1 = UpSample(n_feat, scale_unet)
        self.up_enc2 = nn.Sequential(UpSample(n_feat + scale_unet, scale_unet), UpSample(n_feat, scale_unet))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + scale_unet, scale_unet), UpSample(n_feat, scale_unet))
        for name in ("conv_enc1", "conv_enc2", "conv_enc3", "conv_dec1", "conv_dec2", "conv_dec3"):
            setattr(self, name, nn.Conv2d(n_feat, c, 1, bias=bias))

    def forward(self, x: Tensor, enc: list[Tensor], dec: list[Tensor]) -> Tensor:
        x = self.orb1(x) + self.conv_enc1(enc[0]) + self.conv_dec1(dec[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(enc[1])) + self.conv_dec2(self.up_dec1(dec[1]))
        return self.orb3(x) + self.conv_enc3(self.up_enc2(enc[2])) + self.conv_dec3(self.up_dec2(dec[2]))


@dataclass
class MPRNetTrainOutput(TrainOutput):
    """What ``MPRNet.forward_train`` returns.

    Attributes:
        restored: the stage-3 image (N, 3, H, W), what ``forward`` returns.
        stage2: the stage-2 image (N, 3, H, W), assembled from the top and bottom halves.
        stage1: the stage-1 image (N, 3, H, W), assembled from the two halves decoded by stage 1.
    """

    stage2: Tensor
    stage1: Tensor


class MPRNet(DeblurModel):
    """MPRNet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 8: stage 1 halves each side and then downsamples twice.

    Args:
        n_feat: width of the shallow features and the first U-Net level.
        scale_unetfeats: extra width per U-Net level.
        scale_orsnetfeats: extra width of stage 3.
        num_cab: CABs per ORB.
        kernel_size: conv size in the blocks.
        reduction: channel-attention reduction.
        bias: bias in the block convolutions (False for the released model).
    """

    def __init__(
        self,
        *,
        n_feat: int = 96,
        scale_unetfeats: int = 48,
        scale_orsnetfeats: int = 32,
        num_cab: int = 8,
        kernel_size: int = 3,
        reduction: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if min(n_feat, scale_unetfeats, scale_orsnetfeats, num_cab, kernel_size, reduction) <= 0:
            raise ValueError("MPRNet: widths, num_cab, kernel_size and reduction must be > 0")
        if n_feat % reduction:
            raise ValueError(f"MPRNet: n_feat {n_feat} must be divisible by reduction {reduction}")
        act = nn.PReLU()  # one instance everywhere, as released (one learned slope for the whole network)
        k, r = kernel_size, reduction

        def shallow() -> nn.Sequential:
            return nn.Sequential(
                _conv(3, n_feat, k, bias=bias), CAB(n_feat, kernel_size=k, reduction=r, bias=bias, act=act)
            )

        self.shallow_feat1 = shallow()
        self.shallow_feat2 = shallow()
        self.shallow_feat3 = shallow()
        common = {"kernel_size": k, "reduction": r, "act": act, "bias": bias, "scale": scale_unetfeats}
        self.stage1_encoder = Encoder(n_feat, csff=False, **common)
        self.stage1_decoder = Decoder(n_feat, **common)
        self.stage2_encoder = Encoder(n_feat, csff=True, **common)
        self.stage2_decoder = Decoder(n_feat, **common)
        self.stage3_orsnet = ORSNet(
            n_feat,
            scale_ors=scale_orsnetfeats,
            kernel_size=k,
            reduction=r,
            act=act,
            bias=bias,
            scale_unet=scale_unetfeats,
            num_cab=num_cab,
        )
        self.sam12 = SAM(n_feat, kernel_size=1, bias=bias)
        self.sam23 = SAM(n_feat, kernel_size=1, bias=bias)
        self.concat12 = _conv(n_feat * 2, n_feat, k, bias=bias)
        self.concat23 = _conv(n_feat * 2, n_feat + scale_orsnetfeats, k, bias=bias)
        self.tail = _conv(n_feat + scale_orsnetfeats, 3, k, bias=bias)
        self.pad_multiple = 8

    def _stages(self, x3_img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(stage3, stage2, stage1) images for an input padded to a multiple of 8."""
        h, w = x3_img.shape[-2:]
        top_img, bot_img = x3_img[..., : h // 2, :], x3_img[..., h // 2 :, :]
        ltop, rtop, lbot, rbot = (
            self.stage1_encoder(self.shallow_feat1(q))
            for q in (top_img[..., : w // 2], top_img[..., w // 2 :], bot_img[..., : w // 2], bot_img[..., w // 2 :])
        )

        # Stage 1: left and right quarters are joined along the width, then each half is decoded.
        feat1_top = [torch.cat((a, b), 3) for a, b in zip(ltop, rtop, strict=True)]
        feat1_bot = [torch.cat((a, b), 3) for a, b in zip(lbot, rbot, strict=True)]
        res1_top, res1_bot = self.stage1_decoder(feat1_top), self.stage1_decoder(feat1_bot)
        sam_top, img1_top = self.sam12(res1_top[0], top_img)
        sam_bot, img1_bot = self.sam12(res1_bot[0], bot_img)
        stage1 = torch.cat([img1_top, img1_bot], 2)

        # Stage 2: the two halves, fused with stage 1, joined along the height and decoded.
        x2_top = self.concat12(torch.cat([self.shallow_feat2(top_img), sam_top], 1))
        x2_bot = self.concat12(torch.cat([self.shallow_feat2(bot_img), sam_bot], 1))
        feat2_top = self.stage2_encoder(x2_top, feat1_top, res1_top)
        feat2_bot = self.stage2_encoder(x2_bot, feat1_bot, res1_bot)
        feat2 = [torch.cat((a, b), 2) for a, b in zip(feat2_top, feat2_bot, strict=True)]
        res2 = self.stage2_decoder(feat2)
        sam3, stage2 = self.sam23(res2[0], x3_img)

        # Stage 3: full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x3_img), sam3], 1))
        x3 = self.stage3_orsnet(x3, feat2, res2)
        return self.tail(x3) + x3_img, stage2, stage1

    def restore(self, lq: Tensor) -> Tensor:
        return self._stages(lq)[0]

    def forward_train(self, lq: Tensor, gt: Tensor) -> MPRNetTrainOutput:
        self.check_train_size(lq)
        stage3, stage2, stage1 = self._stages(lq)
        return MPRNetTrainOutput(restored=stage3, stage2=stage2, stage1=stage1)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's objective: ``sum_s Charbonnier(s, gt) + 0.05 * sum_s Edge(s, gt)`` over the three stages."""
        if not isinstance(out, MPRNetTrainOutput):
            raise TypeError(f"MPRNet.loss needs the MPRNetTrainOutput of forward_train, got {type(out).__name__}")
        stages = (out.restored, out.stage2, out.stage1)
        char = sum((charbonnier(s, gt) for s in stages), torch.zeros((), device=gt.device))
        edge = sum((edge_loss(s, gt) for s in stages), torch.zeros((), device=gt.device))
        return {"charbonnier": char, "edge": edge, "total": char + EDGE_LOSS_WEIGHT * edge}


@register_model
def mprnet(**overrides: Any) -> MPRNet:
    """MPRNet (deblurring): 96/48/32 features, 8 CABs per ORB, 20,127,073 parameters (paper: GoPro 32.66 dB)."""
    return MPRNet(**overrides)


@register_model
def mprnet_tiny(**overrides: Any) -> MPRNet:
    """MPRNet at CPU size for smoke runs and tests: 16/8/8 features, 2 CABs per ORB, 427,033 parameters.

    Same three stages, losses and TLC path as ``mprnet``; not a published model.
    """
    return MPRNet(**{"n_feat": 16, "scale_unetfeats": 8, "scale_orsnetfeats": 8, "num_cab": 2, **overrides})
