"""MIMO-UNet, MIMO-UNet+ and MIMO-UNet++: a multi-input multi-output U-Net for single-image deblurring.

Paper: S.-J. Cho, S.-W. Ji, J.-P. Hong, S.-W. Jung and S.-J. Ko, "Rethinking Coarse-to-Fine Approach in Single Image
Deblurring", ICCV 2021 (arXiv:2108.05054).
Upstream: https://github.com/chosj95/MIMO-UNet, code as released in commit 8c85e56 ("Code release", 20 Aug 2021);
the later commits up to HEAD 5c58013 (12 Nov 2021) only edit the README. Architecture from ``models/MIMOUNet.py`` and
``models/layers.py``, loss from ``train.py``. This file is a re-implementation, not a copy.

One encoder takes the blurry image at full, 1/2 and 1/4 resolution (the smaller ones through the shallow
convolutional modules ``SCM*``, merged by the feature attention modules ``FAM*``); one decoder emits a residual
restoration at each of the three scales; the asymmetric feature fusion modules ``AFFs`` give each decoder skip the
encoder features of all three scales.

Module names and parameter shapes are the release's, so ``load_state_dict(torch.load("MIMO-UNet.pkl")["model"])``
(and the same for ``MIMO-UNetPlus.pkl``) loads with ``strict=True``: ``mimo_unet`` has 6,807,171 parameters in 244
state-dict entries, ``mimo_unet_plus`` 16,107,651 in 532. The registration order of the submodules is the release's
too, so even the order of the state-dict keys matches.

Deviations from the release:
    * FFT loss: the release calls ``torch.rfft(x, signal_ndim=2, normalized=False, onesided=False)``, removed in
      torch 1.8; ``models.losses.fft_l1`` uses ``torch.view_as_real(torch.fft.fft2(x))``, the same (..., H, W, 2)
      tensor, computed in float32.
    * Padding: the release evaluates without padding (GoPro frames are 1280x720) and fails on sizes that are not
      multiples of 4; here ``forward`` reflect-pads to a multiple of 4 and crops back (``models.base``).
    * MIMO-UNet++ (self-ensembling) has no code in the release. It is rebuilt from the authors' answer in upstream
      issue #2: average the outputs for the input rotated by 0, 90, 180 and 270 degrees (rotated back), no flips,
      evaluated as two batches (0 with 180, 90 with 270) because rotated copies of a non-square image differ in shape.
    * The width (``base_channels``, fixed at 32 upstream) and the dropout rate are constructor arguments, so that one
      class covers MIMO-UNet, MIMO-UNet+ and the CPU-sized ``mimo_unet_tiny``; the release's two classes differ only
      in ``num_res`` and in the two ``Dropout2d(0.1)`` layers, which hold no state.
    * ``forward`` returns the full-resolution image only; the three scales come from ``forward_train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import fft_l1

FFT_LOSS_WEIGHT = 0.1
"""Weight of the frequency term: ``loss = content + 0.1 * fft``, as the release's ``train.py``."""


class BasicConv(nn.Module):
    """Convolution with bias, optionally followed by ReLU; ``main`` holds both (the release's key layout ``main.0``).

    A plain convolution uses padding ``k // 2`` (size-preserving for odd ``k`` at stride 1, halving at stride 2);
    the transposed one uses ``k // 2 - 1``, which with ``k = 4``, stride 2 exactly doubles the size.
    """

    def __init__(
        self, in_ch: int, out_ch: int, *, kernel_size: int, stride: int = 1, relu: bool = True, transpose: bool = False
    ) -> None:
        super().__init__()
        conv: nn.Module
        if transpose:
            conv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2 - 1)
        else:
            conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)
        # In-place ReLU as upstream: it always follows a fresh convolution output, so no saved tensor is overwritten.
        self.main = nn.Sequential(conv, nn.ReLU(inplace=True)) if relu else nn.Sequential(conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class ResBlock(nn.Module):
    """``x + conv3x3(relu(conv3x3(x)))`` at constant width: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(channels, channels, kernel_size=3),
            BasicConv(channels, channels, kernel_size=3, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.main(x)


class ResStage(nn.Module):
    """``num_res`` ResBlocks in a row, the release's EBlock (encoder) and DBlock (decoder), which are identical."""

    def __init__(self, channels: int, num_res: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(ResBlock(channels) for _ in range(num_res)))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow convolutional module: a downscaled blurry image (N, 3, h, w) -> features (N, ``out_ch``, h, w).

    Four convolutions (3x3, 1x1, 3x3, 1x1; widths out/4, out/2, out/2, out-3) whose output is concatenated with the
    image itself back to ``out_ch`` channels, then mixed by a 1x1 convolution without ReLU.
    """

    def __init__(self, out_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(3, out_ch // 4, kernel_size=3),
            BasicConv(out_ch // 4, out_ch // 2, kernel_size=1),
            BasicConv(out_ch // 2, out_ch // 2, kernel_size=3),
            BasicConv(out_ch // 2, out_ch - 3, kernel_size=1),
        )
        self.conv = BasicConv(out_ch, out_ch, kernel_size=1, relu=False)

    def forward(self, image: Tensor) -> Tensor:
        return self.conv(torch.cat([image, self.main(image)], dim=1))


class FAM(nn.Module):
    """Feature attention module: ``x + conv3x3(x * scm)``, the SCM features gating the strided encoder features."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.merge = BasicConv(channels, channels, kernel_size=3, relu=False)

    def forward(self, x: Tensor, scm: Tensor) -> Tensor:
        return x + self.merge(x * scm)


class AFF(nn.Module):
    """Asymmetric feature fusion: the three encoder scales, already resized to one size, -> one decoder skip.

    Inputs are concatenated in the order (width c, 2c, 4c) -- the order the release's 1x1 weights expect -- then
    1x1 conv + ReLU to ``out_ch``, then 3x3 conv without ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            BasicConv(in_ch, out_ch, kernel_size=1),
            BasicConv(out_ch, out_ch, kernel_size=3, relu=False),
        )

    def forward(self, feat_c: Tensor, feat_2c: Tensor, feat_4c: Tensor) -> Tensor:
        return self.conv(torch.cat([feat_c, feat_2c, feat_4c], dim=1))


@dataclass
class MIMOTrainOutput(TrainOutput):
    """What ``MIMOUNet.forward_train`` returns.

    Attributes:
        restored: the full-resolution restoration (N, 3, H, W), the same tensor as ``multiscale[2]``.
        multiscale: the restorations at 1/4, 1/2 and full resolution, coarse to fine: (N, 3, H/4, W/4),
            (N, 3, H/2, W/2), (N, 3, H, W). Each is a residual added to the nearest-downsampled input, so, like the
            input, roughly in [0, 1] but unclamped.
    """

    multiscale: tuple[Tensor, Tensor, Tensor]


class MIMOUNet(DeblurModel):
    """MIMO-UNet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 4 (two stride-2 levels; ``forward`` pads). Widths are
    ``base_channels`` x (1, 2, 4) at full, 1/2 and 1/4 resolution.

    Args:
        base_channels: width at full resolution (32 in the release); at least 2, so that the SCMs have channels.
        num_res: ResBlocks in each of the three encoder and three decoder stages (8 for MIMO-UNet, 20 for MIMO-UNet+).
        dropout: ``Dropout2d`` rate on both AFF outputs (0.1 in MIMO-UNet+, none in MIMO-UNet). Active in training only.
        self_ensemble: at inference (``forward``/``restore``), average the outputs over input rotations of 0, 90, 180
            and 270 degrees, as MIMO-UNet++ does. ``forward_train`` never ensembles.
    """

    pad_multiple = 4

    def __init__(
        self, *, base_channels: int = 32, num_res: int = 8, dropout: float = 0.0, self_ensemble: bool = False
    ) -> None:
        super().__init__()
        if base_channels < 2:
            raise ValueError(f"base_channels must be >= 2 (the SCMs need out/4 >= 1 channels), got {base_channels}")
        if num_res < 1:
            raise ValueError(f"num_res must be >= 1, got {num_res}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        c = base_channels
        self.self_ensemble = self_ensemble

        # Submodules are created in the release's order, so that state_dict() lists its keys in the same order.
        self.Encoder = nn.ModuleList([ResStage(c, num_res), ResStage(2 * c, num_res), ResStage(4 * c, num_res)])
        self.feat_extract = nn.ModuleList(
            [
                BasicConv(3, c, kernel_size=3),
                BasicConv(c, 2 * c, kernel_size=3, stride=2),
                BasicConv(2 * c, 4 * c, kernel_size=3, stride=2),
                BasicConv(4 * c, 2 * c, kernel_size=4, stride=2, transpose=True),
                BasicConv(2 * c, c, kernel_size=4, stride=2, transpose=True),
                BasicConv(c, 3, kernel_size=3, relu=False),
            ]
        )
        self.Decoder = nn.ModuleList([ResStage(4 * c, num_res), ResStage(2 * c, num_res), ResStage(c, num_res)])
        # 1x1 convolutions that halve the width after each (upsampled features, AFF skip) concatenation.
        self.Convs = nn.ModuleList([BasicConv(4 * c, 2 * c, kernel_size=1), BasicConv(2 * c, c, kernel_size=1)])
        # Image heads of the two coarse scales (the full-scale head is feat_extract[5]).
        self.ConvsOut = nn.ModuleList(
            [BasicConv(4 * c, 3, kernel_size=3, relu=False), BasicConv(2 * c, 3, kernel_size=3, relu=False)]
        )
        # AFFs[0] feeds the full-resolution skip (width c), AFFs[1] the 1/2 one (2c); both read all 7c channels.
        self.AFFs = nn.ModuleList([AFF(7 * c, c), AFF(7 * c, 2 * c)])
        # The release numbers these by pyramid level from the bottom: FAM1/SCM1 at 1/4 resolution, FAM2/SCM2 at 1/2.
        self.FAM1 = FAM(4 * c)
        self.SCM1 = SCM(4 * c)
        self.FAM2 = FAM(2 * c)
        self.SCM2 = SCM(2 * c)
        # Stateless, so they change nothing in the state dict; an Identity skips the no-op mask when dropout is 0.
        self.drop1 = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.drop2 = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def multiscale(self, lq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The network proper: (N, 3, H, W) with H, W multiples of 4 -> restorations at 1/4, 1/2 and full size."""
        # Nearest-neighbour pyramid (F.interpolate's default mode), as the release: the coarse outputs are residuals
        # on top of these images, so a pretrained checkpoint only fits this exact downsampling.
        lq_2 = F.interpolate(lq, scale_factor=0.5)
        lq_4 = F.interpolate(lq_2, scale_factor=0.5)
        scm_2 = self.SCM2(lq_2)
        scm_4 = self.SCM1(lq_4)

        enc_1 = self.Encoder[0](self.feat_extract[0](lq))
        enc_2 = self.Encoder[1](self.FAM2(self.feat_extract[1](enc_1), scm_2))
        enc_4 = self.Encoder[2](self.FAM1(self.feat_extract[2](enc_2), scm_4))

        # Each skip sees all three encoder scales, resized (nearest, as the release) to its own resolution.
        enc_4_at_2 = F.interpolate(enc_4, scale_factor=2)
        skip_2 = self.AFFs[1](F.interpolate(enc_1, scale_factor=0.5), enc_2, enc_4_at_2)
        skip_1 = self.AFFs[0](enc_1, F.interpolate(enc_2, scale_factor=2), F.interpolate(enc_4_at_2, scale_factor=2))
        skip_2 = self.drop2(skip_2)
        skip_1 = self.drop1(skip_1)

        dec = self.Decoder[0](enc_4)
        out_4 = self.ConvsOut[0](dec) + lq_4
        dec = self.Decoder[1](self.Convs[0](torch.cat([self.feat_extract[3](dec), skip_2], dim=1)))
        out_2 = self.ConvsOut[1](dec) + lq_2
        dec = self.Decoder[2](self.Convs[1](torch.cat([self.feat_extract[4](dec), skip_1], dim=1)))
        out_1 = self.feat_extract[5](dec) + lq
        return out_4, out_2, out_1

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> full-resolution restoration, rotation-ensembled if ``self_ensemble``."""
        if not self.self_ensemble:
            return self.multiscale(lq)[2]
        n = lq.shape[0]
        dims = (-2, -1)
        total = torch.zeros_like(lq)
        # Two batches as upstream issue #2: rotations by 0 and 180 degrees keep the shape, 90 and 270 swap H and W.
        # Rotating the padded input keeps H and W multiples of 4, and every rotation sees the same padded image.
        for k in (0, 1):
            batch = torch.cat([torch.rot90(lq, k, dims), torch.rot90(lq, k + 2, dims)])
            pred = self.multiscale(batch)[2]
            total = total + torch.rot90(pred[:n], -k, dims) + torch.rot90(pred[n:], -(k + 2), dims)
        return total / 4

    def forward_train(self, lq: Tensor, gt: Tensor) -> MIMOTrainOutput:
        """(N, 3, H, W) crops, H and W multiples of 4 -> the three scales (``gt`` is unused: the loss reads it)."""
        self.check_train_size(lq)
        outs = self.multiscale(lq)
        return MIMOTrainOutput(restored=outs[2], multiscale=outs)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's recipe: ``content + 0.1 * fft``, each summed over the three scales.

        ``content`` is the L1 of each scale against ``gt`` bilinearly downsampled to it (the release's ``train.py``;
        note that the input pyramid is nearest), ``fft`` the L1 of their spectra (``models.losses.fft_l1``).

        Args:
            out: a ``MIMOTrainOutput`` from ``forward_train``.
            gt: sharp (N, 3, H, W) in [0, 1].

        Returns:
            ``{"content", "fft", "total"}``, scalars.
        """
        if not isinstance(out, MIMOTrainOutput):
            raise TypeError(f"MIMOUNet.loss needs a MIMOTrainOutput, got {type(out).__name__}")
        # Both downsampled from the full-size gt (not 1/4 from 1/2), as the release. align_corners=False is the
        # default the release relied on; antialias did not exist then and stays off.
        gt_pyramid = (
            F.interpolate(gt, scale_factor=0.25, mode="bilinear", align_corners=False),
            F.interpolate(gt, scale_factor=0.5, mode="bilinear", align_corners=False),
            gt,
        )
        content = gt.new_zeros(())
        fft = gt.new_zeros(())
        for pred, target in zip(out.multiscale, gt_pyramid, strict=True):
            content = content + F.l1_loss(pred, target)
            fft = fft + fft_l1(pred, target)
        return {"content": content, "fft": fft, "total": content + FFT_LOSS_WEIGHT * fft}


@register_model
def mimo_unet(**overrides: Any) -> MIMOUNet:
    """MIMO-UNet (release ``MIMOUNet``): width 32, 8 ResBlocks per stage, 6,807,171 parameters (README: GoPro 31.73)."""
    return MIMOUNet(**{"base_channels": 32, "num_res": 8, "dropout": 0.0, **overrides})


@register_model
def mimo_unet_plus(**overrides: Any) -> MIMOUNet:
    """MIMO-UNet+ (release ``MIMOUNetPlus``): 20 ResBlocks per stage, 16,107,651 parameters (README: GoPro 32.45).

    Differs from MIMO-UNet only in depth and in ``Dropout2d(0.1)`` on both AFF outputs during training.
    """
    return MIMOUNet(**{"base_channels": 32, "num_res": 20, "dropout": 0.1, **overrides})


@register_model
def mimo_unet_plusplus(**overrides: Any) -> MIMOUNet:
    """MIMO-UNet++: MIMO-UNet+ (same weights) evaluated with the 4-rotation self-ensemble (README: GoPro 32.68).

    Training is plain MIMO-UNet+; only ``forward`` ensembles, at 4x the inference cost.
    """
    return MIMOUNet(**{"base_channels": 32, "num_res": 20, "dropout": 0.1, "self_ensemble": True, **overrides})


@register_model
def mimo_unet_tiny(**overrides: Any) -> MIMOUNet:
    """MIMO-UNet at CPU size for smoke runs and tests: width 8, 2 ResBlocks per stage, 136,899 parameters.

    Same modules and losses as ``mimo_unet``, so the whole training path is exercised; not a published model. Sized on
    synthblur with ``train=quick`` (400 AdamW steps, batch 4, 128 px crops; about 110 CPU-seconds on one thread):
    test PSNR 23.79 dB against 23.57 for the blurry input. Width 8 with 1 ResBlock (88,291 parameters) reached 23.69
    in 97 s, width 12 with 1 ResBlock 23.78 in 144 s.
    """
    return MIMOUNet(**{"base_channels": 8, "num_res": 2, "dropout": 0.0, **overrides})
