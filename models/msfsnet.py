"""MSFS-Net: multi-scale frequency separation network for single-image motion deblurring.

Paper: Y. Zhang, Q. Li, M. Qi, D. Liu, J. Kong, J. Wang, "Multi-scale frequency separation network for image
deblurring" (an awesome-list entry linking the release calls it TCSVT 2023). Upstream, inference only, Apache-2.0:
LiQiang0307/MSFS-Net @ ebc59c79304ef5ede1c9e060a6f6e9607eb08867 (12 Aug 2022); ``models/freNet.py``, ``layers.py``
and ``octconv.py`` are unchanged since 76c59ca (11 Aug 2022). This file is a re-implementation, not a copy: module
names, shapes and registration order equal the release's ``FreNet`` (21,586,291 parameters, 852 state-dict entries),
so ``model.load_state_dict(torch.load("model.pkl")["model"])`` loads the released GoPro/RealBlur weights strictly.

Architecture (paper Figs. 2-4 = release), C = ``channels`` (64) at every scale, H x W the padded input:

- ``conv``: 3x3 conv + ReLU, 3 -> C. ``octblock`` 0-5 are the FSMs (paper Fig. 3b; :class:`OctBlock`).
- Encoder: FSM 0 (1/1) -> ``Encoder.0`` (EBlock, 8 ResBlocks) -> ``Encoder.1`` (3x3 stride-2 conv, LeakyReLU 0.2)
  -> FSM 1 (1/2) -> ``Encoder.2`` (EBlock) -> ``Encoder.3`` (down) -> FSM 2 (1/4).
- ``latent``: 10 RCABs at 1/4, then FSM 3 gives the 1/4 decoder feature; ``conv_4`` is its RGB head.
- Decoder, twice: CSFFM (``mix1``/``mix2``, paper Eqs. 3-4: sigmoid(w) * encoder + (1 - sigmoid(w)) * decoder,
  w initialised at -1 and -0.6), concatenated with the encoder feature (2C), ``Decoder.i`` (30 RCABs at 2C, conv
  2C -> 8C + PixelShuffle x2), FSM 4/5 (2C -> C). ``conv_2_`` is the 1/2 RGB head, ``tail_`` the full-resolution one.
  The CSFFM's encoder features are the stride-2 conv outputs (before FSM 1 / FSM 2), as in the release.
- Every RGB head is a 1x1 conv added to the input downsampled by nearest neighbour (``F.interpolate(x, 0.5)``).
- ``changeChannel_`` (1x1, C -> C/2, one module shared by both scales) maps the decoder's HF features at 1/2 and 1/1
  (C channels, because FSM 4/5 take 2C inputs) to the encoder's C/2 for the contrastive loss.

Deviations from the release, and decisions the release leaves open (it has no training code):

1. First EBlock (``encoder_first_block``). The release's blurry path runs ``down_1 = Encoder[0](x_1); down_1 =
   Encoder[1](x_1)``, so Encoder.0's output is thrown away; its second (GT) path applies Encoder.0 then Encoder.1.
   ``"release"`` reproduces both paths exactly: the blurry path skips Encoder.0 and the re-encoding path (see 4)
   applies it, so Encoder.0 is trained only through the feature losses and does not affect ``forward``.
   ``"paper"`` applies Encoder.0 on both paths: the encoder as evidently intended (the paper describes one encoder
   shared by the blurry and the output image, Fig. 2), with the block the release builds and its GT path uses. The
   default is ``"release"`` so the published weights reproduce the published numbers (under ``"paper"`` they would
   run on the blurry path a block the released network never ran there).
2. Sizes. The release patches odd sizes with a ``try/except`` that zero-pads one column inside the OctConv. Here
   ``forward`` (the base class) reflect-pads the input to :attr:`MSFSNet.pad_multiple` and crops back, and
   ``restore`` raises on any other size. ``pad_multiple`` = 2 ** (2 stride-2 levels + 1 for the FSM's half-resolution
   branch at the 1/4 scale) = 8; 4 without FSMs (``use_fsm=False``), which have no half-resolution branch.
3. Training losses (paper Eqs. 5-7) are not in the release; they are implemented from the paper. All L1 distances
   are means over elements (``F.l1_loss``), as MIMO-UNet's training code (whose scaffold the release copies) uses
   ``nn.L1Loss``.
   Scale pairing, read off the release's returned 30-tuple and Fig. 2 (scale k = 1/2^k, k = 0, 1, 2):

   ====== =================================== ================================= =============================
   k      anchor (decoder HF)                 negative (blurry-encoder HF)       positive (re-encoded HF)
   ====== =================================== ================================= =============================
   0, 1/1 ``changeChannel_``(FSM 5 HF), C/2   FSM 0 HF, C/2                      FSM 0 HF of the positive, C/2
   1, 1/2 ``changeChannel_``(FSM 4 HF), C/2   FSM 1 HF, C/2                      FSM 1 HF of the positive, C/2
   2, 1/4 FSM 3 HF, C/2                       FSM 2 HF, C/2                      FSM 2 HF of the positive, C/2
   ====== =================================== ================================= =============================

   The consistency loss pairs the blurry encoder's LF of FSM k with the positive's LF of FSM k (C/2 channels, at
   half the resolution of scale k). Eq. 6's denominator is clamped to ``contrastive_eps``; nothing is detached (the
   paper describes closed loops and says nothing about stopping gradients).
4. Positive source (``positive_source``). The paper re-encodes the network's *output* (closed loop); the release's
   forward re-encodes a second input named ``sharp``/``gt``. ``"output"`` (default, paper) or ``"ground_truth"``.
   In training the re-encoding normalises with its own batch statistics and, by default (``reencode_bn_stats=True``,
   what a train-mode forward of the release's ``FreNet`` on ``[blur, sharp]`` does), also updates the encoder's
   BatchNorm running statistics, so those blend blurry and output/GT batches although inference only sees blurry
   inputs. ``False`` keeps them to the blurry path. Neither is clearly right (measured on ``msfsnet_tiny``, eval mode):
   overfitting 4 fixed 128 px pairs for 200 steps (identity 20.9 dB, train mode 27.5 dB) gives 20.2 dB with the
   updates and 26.7 dB without; 300 steps on random crops of the synthblur train split (test identity 23.57 dB) give
   23.63 dB with and 20.7 dB without, where exact blurry population statistics do worse still (18.4 dB). With batches
   of 4 the encoder FSMs' BatchNorms make eval mode fragile either way; the release's behaviour is the default.
5. Multi-scale L1 (``multiscale_l1``, off by default because Eq. 7 has none): L1 of the 1/4 and 1/2 heads against the
   ground truth downsampled bilinearly by 0.25 and 0.5 (MIMO-UNet's ``train.py``, whose scaffold the release
   copies). Without it ``conv_4`` and ``conv_2_`` cannot receive a gradient (they do not feed the full-resolution
   output), yet the release ships both heads and returns their outputs, which suggests its authors used such a
   term. Parameters a configuration's loss cannot reach (these heads, ``changeChannel_`` without the CLM) are
   frozen (``requires_grad=False``; see :meth:`MSFSNet.unreachable_modules`) but kept so the release's weights load.
6. Table 3 ablations: ``use_fsm=False`` swaps each FSM for :class:`PlainBlock`, the same three conv + BN + ReLU
   layers with ordinary convolutions (identical parameter count, ~1.9x the FSM's FLOPs); its "HF"/"LF" are the two
   channel halves of the 3x3 layer's output, both at full resolution, i.e. unseparated features of the same shapes
   as the FSM's HF and (up to resolution) LF. ``use_csffm=False`` replaces each mix by the decoder feature alone
   (the w -> -inf limit of the mix), so the DBlock sees the plain skip ``cat([encoder, decoder])`` and nothing else
   changes. ``use_clm=False`` / ``use_consistency=False`` drop Eq. 6 / Eq. 5 (neither computed nor reported).
7. Inference (``forward``/``restore``) runs the blurry path only. The release's forward always runs its GT branch
   too (``eval.py`` calls ``model([blur, label])[0]``); in eval mode that branch cannot change the output, and
   skipping it saves ~19% (7.53 -> 6.08 TFLOP at 720x1280, as counted by ``torch.utils.flop_counter``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.octconv import OctConvBNReLU

Scales3 = tuple[Tensor, Tensor, Tensor]
"""One tensor per scale, finest first: scale 1/1, 1/2, 1/4 (k = 0, 1, 2)."""

EncoderFirstBlock = Literal["release", "paper"]
PositiveSource = Literal["output", "ground_truth"]

_NUM_LEVELS = 2  # stride-2 DownBlocks; the release hard-codes two (scales 1/2 and 1/4)


# --------------------------------------------------------------------------------------------------------------------
# Building blocks (names of attributes follow the release so its state dict loads)
# --------------------------------------------------------------------------------------------------------------------


class ConvAct(nn.Module):
    """Conv (bias) + optional ReLU, "same" padding (release: ``BasicConv``): (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, relu: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x))), C -> C (MIMO-UNet's ResBlock)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(ConvAct(channels, channels, 3, relu=True), ConvAct(channels, channels, 3, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + x


class EBlock(nn.Module):
    """``num_blocks`` ResBlocks, (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(ResBlock(channels) for _ in range(num_blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DownBlock(nn.Module):
    """3x3 stride-2 conv without bias + LeakyReLU(0.2): (N, C, H, W) -> (N, C, H/2, W/2) for even H, W."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Nested Sequential only to reproduce the release's key ``dual_module.0.0.weight``.
        self.dual_module = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.LeakyReLU(negative_slope=0.2, inplace=True),
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.dual_module(x)


class ChannelAttention(nn.Module):
    """x * sigmoid(conv(relu(conv(global_avg_pool(x))))), C -> C/reduction -> C (RCAN's ``CALayer``).

    ``avg_pool`` stays an ``nn.AdaptiveAvgPool2d(1)`` module so TLC (``benchmark.evaluation.tlc.to_local``) can swap it
    for a local average pool.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: x + CA(conv3x3(relu(conv3x3(x)))), (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class DBlock(nn.Module):
    """``num_blocks`` RCABs then conv 3x3 (C -> 4C) + PixelShuffle(2): (N, C, H, W) -> (N, C, 2H, 2W)."""

    def __init__(self, channels: int, num_blocks: int, reduction: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(RCAB(channels, reduction) for _ in range(num_blocks)))
        self.up = nn.Sequential(nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.layers(x))


class OctBlock(nn.Module):
    """Frequency separation module (FSM, paper Fig. 3b).

    1x1 OctConv (alpha 0 -> 0.5), 3x3 OctConv (0.5 -> 0.5), 1x1 OctConv (0.5 -> 0), each + BN + ReLU, plus a 1x1
    residual conv: out = conv1x1(x) + oct3(oct2(oct1(x))).

    Input (N, C_in, H, W) with H, W even. Returns (hf, lf, out): the 3x3 OctConv's outputs hf (N, C_in/2, H, W) and
    lf (N, C_in/2, H/2, W/2) (non-negative, after ReLU) and the fused out (N, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.oct1 = OctConvBNReLU(in_channels, in_channels, 1, alpha_in=0.0, alpha_out=0.5)
        self.oct2 = OctConvBNReLU(in_channels, in_channels, 3, alpha_in=0.5, alpha_out=0.5)
        self.oct3 = OctConvBNReLU(in_channels, out_channels, 1, alpha_in=0.5, alpha_out=0.0)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"FSM input must have even height and width, got {tuple(x.shape[-2:])}")
        hf, lf = self.oct2(self.oct1(x))
        assert lf is not None  # alpha_out = 0.5
        fused, _ = self.oct3((hf, lf))
        return hf, lf, self.conv(x) + fused


class PlainBlock(nn.Module):
    """The "w/o FSM" ablation's stand-in for :class:`OctBlock`: the same layers with ordinary convolutions.

    1x1 conv, 3x3 conv, 1x1 conv (no bias), each + BN + ReLU, plus the 1x1 residual conv; this is an OctBlock with
    every alpha = 0 (Chen et al. 2019), so parameters are identical and FLOPs ~1.9x (no half-resolution branch).

    Input (N, C_in, H, W). Returns (hf, lf, out) like :class:`OctBlock`, but hf and lf are the first and second channel
    halves of the 3x3 layer's output, both (N, C_in/2, H, W): unseparated features of the FSM's channel counts, which
    is what the paper's "w/o FSM but w/ CLM or Consistency" rows apply the feature losses to.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(in_channels)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mid = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        fused = F.relu(self.bn3(self.conv3(mid)))
        half = mid.shape[1] // 2
        return mid[:, :half], mid[:, half:], self.conv(x) + fused


class Mix(nn.Module):
    """CSFFM mixing (paper Eqs. 3-4, AECR-Net's adaptive mixup): f1 * sigmoid(w) + f2 * (1 - sigmoid(w)).

    ``w`` is one learnable scalar, shape (1,). f1, f2: same shape (N, C, H, W); returns that shape.
    """

    def __init__(self, init: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([init]))

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        s = torch.sigmoid(self.w)
        return f1 * s + f2 * (1 - s)


# --------------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class EncoderFeatures:
    """What the encoder extracts from one image (N, 3, H, W), H and W multiples of ``pad_multiple``.

    Attributes:
        hf: FSM 0/1/2 high-frequency features at scales 1/1, 1/2, 1/4: (N, C/2, H/s, W/s).
        lf: FSM 0/1/2 low-frequency features: (N, C/2, H/2s, W/2s); (N, C/2, H/s, W/s) with ``use_fsm=False``.
        skip_half: ``Encoder.1`` output (N, C, H/2, W/2), the CSFFM's encoder input at 1/2.
        skip_quarter: ``Encoder.3`` output (N, C, H/4, W/4), the CSFFM's encoder input at 1/4.
        bottom: FSM 2's fused output (N, C, H/4, W/4), the latent's input.
    """

    hf: Scales3
    lf: Scales3
    skip_half: Tensor
    skip_quarter: Tensor
    bottom: Tensor


class _Decoded(NamedTuple):
    restored: Tensor
    restored_half: Tensor | None
    restored_quarter: Tensor | None
    hf: Scales3 | None


@dataclass
class MSFSTrainOutput(TrainOutput):
    """Everything MSFS-Net's loss reads. N, H, W as the training crop; C = ``channels``; scales finest first.

    Attributes:
        restored: full-resolution output (N, 3, H, W) (inherited).
        restored_half: 1/2 head, ``conv_2_`` + nearest-downsampled input, (N, 3, H/2, W/2).
        restored_quarter: 1/4 head, ``conv_4`` + nearest-downsampled input, (N, 3, H/4, W/4).
        enc_hf: blurry-encoder HF (the CLM's negatives), see :attr:`EncoderFeatures.hf`.
        enc_lf: blurry-encoder LF, see :attr:`EncoderFeatures.lf`.
        dec_hf: decoder HF (the CLM's anchors): ``changeChannel_``(FSM 5 HF), ``changeChannel_``(FSM 4 HF), FSM 3 HF,
            each (N, C/2, H/s, W/s); None when the CLM is off.
        pos_hf: HF of the re-encoded positive (output or ground truth); None when CLM and consistency are both off.
        pos_lf: LF of the re-encoded positive; None likewise.
    """

    restored_half: Tensor
    restored_quarter: Tensor
    enc_hf: Scales3
    enc_lf: Scales3
    dec_hf: Scales3 | None
    pos_hf: Scales3 | None
    pos_lf: Scales3 | None


# --------------------------------------------------------------------------------------------------------------------
# Losses (paper Eqs. 5-6), pure functions so they can be checked by hand
# --------------------------------------------------------------------------------------------------------------------


def consistency_loss(lf: Scales3, lf_positive: Scales3) -> Tensor:
    """Eq. 5: sum over scales k of mean |lf_k - lf_positive_k| (scalar)."""
    return torch.stack([F.l1_loss(a, b) for a, b in zip(lf, lf_positive, strict=True)]).sum()


def contrastive_loss(anchor: Scales3, positive: Scales3, negative: Scales3, *, eps: float) -> Tensor:
    """Eq. 6: sum over scales k of mean|a_k - p_k| / max(mean|a_k - n_k|, eps) (scalar).

    ``eps`` guards the ratio when an anchor coincides with its negative (e.g. a network that copies its input).
    """
    ratios = [
        F.l1_loss(a, p) / F.l1_loss(a, n).clamp_min(eps) for a, p, n in zip(anchor, positive, negative, strict=True)
    ]
    return torch.stack(ratios).sum()


# --------------------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------------------


def _check_arguments(
    *,
    channels: int,
    blocks: tuple[int, int, int],
    reduction: int,
    encoder_first_block: str,
    positive_source: str,
    weights: tuple[float, float, float],
    contrastive_eps: float,
) -> None:
    """The constructor's argument checks (``ValueError`` naming the argument)."""
    if channels < 2 or channels % 2:
        raise ValueError(f"channels must be even and >= 2 (the FSM halves it), got {channels}")
    if min(blocks) < 0:
        raise ValueError("block counts must be >= 0")
    if not 1 <= reduction <= channels:
        raise ValueError(f"reduction must lie in [1, channels={channels}], got {reduction}")
    if encoder_first_block not in ("release", "paper"):
        raise ValueError(f"encoder_first_block must be 'release' or 'paper', got {encoder_first_block!r}")
    if positive_source not in ("output", "ground_truth"):
        raise ValueError(f"positive_source must be 'output' or 'ground_truth', got {positive_source!r}")
    if min(weights) < 0 or contrastive_eps <= 0:
        raise ValueError("loss weights must be >= 0 and contrastive_eps > 0")


class MSFSNet(DeblurModel):
    """MSFS-Net (see the module docstring for the architecture, the release, and every deviation from it).

    ``forward(lq)``: (N, 3, H, W) blurry RGB in [0, 1], any H, W -> restored (N, 3, H, W), unclamped.

    Args:
        channels: width C at every scale (release 64); even, so the FSM splits it in two halves.
        encoder_blocks: ResBlocks per EBlock (release 8).
        latent_blocks: RCABs in the latent (release 10).
        decoder_blocks: RCABs per DBlock (release 30).
        reduction: channel-attention reduction (release 16), applied to C (latent) and 2C (decoder).
        encoder_first_block: ``"release"`` (the blurry path skips ``Encoder.0``, the re-encoding path applies it) or
            ``"paper"`` (both apply it). Deviation 1 of the module docstring.
        positive_source: what training re-encodes for the CLM positives and the consistency targets: the network's
            ``"output"`` (paper) or the ``"ground_truth"`` (release forward). Deviation 4.
        use_fsm: FSMs (True) or the :class:`PlainBlock` ablation (False).
        use_csffm: CSFFM mixing (True) or the plain-skip ablation (False).
        use_clm: compute and add the contrastive loss (Eq. 6).
        use_consistency: compute and add the LF consistency loss (Eq. 5).
        weight_high: lambda_1 of Eq. 7 (paper 0.05).
        weight_low: lambda_2 of Eq. 7 (paper 0.05).
        multiscale_l1: add the 1/4 and 1/2 heads' L1 (deviation 5).
        weight_multiscale: weight of that term.
        contrastive_eps: lower bound of Eq. 6's denominators.
        reencode_bn_stats: let the re-encoding pass update the encoder's BatchNorm running statistics (deviation 4).
    """

    def __init__(
        self,
        *,
        channels: int = 64,
        encoder_blocks: int = 8,
        latent_blocks: int = 10,
        decoder_blocks: int = 30,
        reduction: int = 16,
        encoder_first_block: EncoderFirstBlock = "release",
        positive_source: PositiveSource = "output",
        use_fsm: bool = True,
        use_csffm: bool = True,
        use_clm: bool = True,
        use_consistency: bool = True,
        weight_high: float = 0.05,
        weight_low: float = 0.05,
        multiscale_l1: bool = False,
        weight_multiscale: float = 1.0,
        contrastive_eps: float = 1e-6,
        reencode_bn_stats: bool = True,
    ) -> None:
        super().__init__()
        _check_arguments(
            channels=channels,
            blocks=(encoder_blocks, latent_blocks, decoder_blocks),
            reduction=reduction,
            encoder_first_block=encoder_first_block,
            positive_source=positive_source,
            weights=(weight_high, weight_low, weight_multiscale),
            contrastive_eps=contrastive_eps,
        )

        self.encoder_first_block: EncoderFirstBlock = encoder_first_block
        self.positive_source: PositiveSource = positive_source
        self.use_fsm = use_fsm
        self.use_csffm = use_csffm
        self.use_clm = use_clm
        self.use_consistency = use_consistency
        self.weight_high = weight_high
        self.weight_low = weight_low
        self.multiscale_l1 = multiscale_l1
        self.weight_multiscale = weight_multiscale
        self.contrastive_eps = contrastive_eps
        self.reencode_bn_stats = reencode_bn_stats
        # Each stride-2 level halves H and W; an FSM's low branch halves them once more at the coarsest scale (1/4),
        # and pooling then nearest-upsampling only restores the size when it is even there.
        self.pad_multiple = 2 ** (_NUM_LEVELS + (1 if use_fsm else 0))

        c = channels
        fsm: type[OctBlock | PlainBlock] = OctBlock if use_fsm else PlainBlock
        # Registration order = the release's FreNet.__init__, so state_dict() keys come out in the same order.
        self.conv = ConvAct(3, c, 3, relu=True)
        self.latent = nn.Sequential(*(RCAB(c, reduction) for _ in range(latent_blocks)))
        self.Encoder = nn.ModuleList([EBlock(c, encoder_blocks), DownBlock(c), EBlock(c, encoder_blocks), DownBlock(c)])
        self.Decoder = nn.ModuleList([DBlock(2 * c, decoder_blocks, reduction) for _ in range(_NUM_LEVELS)])
        self.octblock = nn.ModuleList([fsm(c, c) for _ in range(4)] + [fsm(2 * c, c) for _ in range(2)])
        self.tail_ = nn.Conv2d(c, 3, 1)
        self.changeChannel_ = nn.Conv2d(c, c // 2, 1)
        self.mix1: Mix | None = Mix(-1.0) if use_csffm else None
        self.mix2: Mix | None = Mix(-0.6) if use_csffm else None
        self.conv_2_ = nn.Conv2d(c, 3, 1)
        self.conv_4 = nn.Conv2d(c, 3, 1)
        for module in self.unreachable_modules():
            module.requires_grad_(False)

    def unreachable_modules(self) -> list[nn.Module]:
        """Modules whose parameters this configuration's loss never reaches; ``__init__`` freezes them.

        They stay in the state dict (the release's weights still load) but get ``requires_grad=False``, so optimisers
        (weight decay included) and DDP see exactly the trained set: ``conv_2_``/``conv_4`` unless ``multiscale_l1``
        (they do not feed the full-resolution output); ``changeChannel_`` unless the CLM is on; ``Encoder.0`` when
        ``encoder_first_block="release"`` and neither feature loss re-encodes anything.
        """
        frozen: list[nn.Module] = []
        if not self.multiscale_l1:
            frozen += [self.conv_2_, self.conv_4]
        if not self.use_clm:
            frozen.append(self.changeChannel_)
        if self.encoder_first_block == "release" and not (self.use_clm or self.use_consistency):
            frozen.append(self.Encoder[0])
        return frozen

    # -- encoder / decoder ------------------------------------------------------------------------------------------

    def encode(self, img: Tensor, *, blurry: bool = False) -> EncoderFeatures:
        """Shallow conv + encoder + FSMs 0-2 on ``img`` (N, 3, H, W), H and W multiples of ``pad_multiple``.

        Args:
            img: an RGB batch in [0, 1].
            blurry: True for the blurry input's path, which skips ``Encoder.0`` under ``encoder_first_block="release"``;
                False (default) for the re-encoding path, which always applies it (the release's GT path does).
        """
        x0 = self.conv(img)
        hf_1, lf_1, x_1 = self.octblock[0](x0)
        skip_first = blurry and self.encoder_first_block == "release"
        skip_half = self.Encoder[1](x_1 if skip_first else self.Encoder[0](x_1))
        hf_2, lf_2, x_2 = self.octblock[1](skip_half)
        skip_quarter = self.Encoder[3](self.Encoder[2](x_2))
        hf_4, lf_4, x_4 = self.octblock[2](skip_quarter)
        return EncoderFeatures(
            hf=(hf_1, hf_2, hf_4), lf=(lf_1, lf_2, lf_4), skip_half=skip_half, skip_quarter=skip_quarter, bottom=x_4
        )

    @contextmanager
    def _running_stats_frozen(self, frozen: bool) -> Iterator[None]:
        """If ``frozen``: while active, the encoder's BatchNorms still normalise with batch statistics in training but
        leave their running statistics (and ``num_batches_tracked``) untouched, as ``track_running_stats=False`` makes
        ``F.batch_norm`` skip them."""
        encoder = (self.conv, self.Encoder, *self.octblock[:3])
        norms = [n for module in encoder for n in module.modules() if isinstance(n, nn.BatchNorm2d)] if frozen else []
        norms = [n for n in norms if n.track_running_stats]
        for norm in norms:
            norm.track_running_stats = False
        try:
            yield
        finally:
            for norm in norms:
                norm.track_running_stats = True

    def _fuse(self, mix: Mix | None, enc: Tensor, dec: Tensor) -> Tensor:
        """CSFFM: the mixed feature, or the decoder feature alone in the w/o-CSFFM ablation; same shape as ``dec``."""
        return dec if mix is None else mix(enc, dec)

    def _decode(self, lq: Tensor, enc: EncoderFeatures, *, train: bool) -> _Decoded:
        """Latent + decoder; ``train`` also computes the 1/4, 1/2 heads and the CLM anchors (unused by ``forward``)."""
        yh_4, _, y_4 = self.octblock[3](self.latent(enc.bottom))
        up_1 = self.Decoder[0](torch.cat([enc.skip_quarter, self._fuse(self.mix1, enc.skip_quarter, y_4)], dim=1))
        yh_2, _, y_2 = self.octblock[4](up_1)
        up_2 = self.Decoder[1](torch.cat([enc.skip_half, self._fuse(self.mix2, enc.skip_half, y_2)], dim=1))
        yh_1, _, y_1 = self.octblock[5](up_2)
        restored = lq + self.tail_(y_1)
        if not train:
            return _Decoded(restored, None, None, None)
        # The input pyramid is nearest-neighbour (F.interpolate's default mode), as in the release.
        lq_2 = F.interpolate(lq, scale_factor=0.5)
        lq_4 = F.interpolate(lq_2, scale_factor=0.5)
        anchors = (self.changeChannel_(yh_1), self.changeChannel_(yh_2), yh_4) if self.use_clm else None
        return _Decoded(restored, self.conv_2_(y_2) + lq_2, self.conv_4(y_4) + lq_4, anchors)

    # -- DeblurModel contract ---------------------------------------------------------------------------------------

    def restore(self, lq: Tensor) -> Tensor:
        """(N, 3, H, W), H and W multiples of ``pad_multiple`` -> restored (N, 3, H, W). Use ``forward`` otherwise."""
        h, w = lq.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(
                f"MSFSNet.restore needs H and W divisible by {self.pad_multiple}, got {h}x{w}; call forward(), "
                "which pads and crops"
            )
        return self._decode(lq, self.encode(lq, blurry=True), train=False).restored

    def forward_train(self, lq: Tensor, gt: Tensor) -> MSFSTrainOutput:
        """Training pass on crops (N, 3, H, W) whose H, W are multiples of ``pad_multiple``; gt has lq's shape."""
        self.check_train_size(lq)
        if gt.shape != lq.shape:
            raise ValueError(f"gt shape {tuple(gt.shape)} differs from lq shape {tuple(lq.shape)}")
        enc = self.encode(lq, blurry=True)
        dec = self._decode(lq, enc, train=True)
        assert dec.restored_half is not None and dec.restored_quarter is not None
        pos: EncoderFeatures | None = None
        if self.use_clm or self.use_consistency:
            with self._running_stats_frozen(not self.reencode_bn_stats):
                pos = self.encode(dec.restored if self.positive_source == "output" else gt)
        return MSFSTrainOutput(
            restored=dec.restored,
            restored_half=dec.restored_half,
            restored_quarter=dec.restored_quarter,
            enc_hf=enc.hf,
            enc_lf=enc.lf,
            dec_hf=dec.hf,
            pos_hf=pos.hf if pos is not None else None,
            pos_lf=pos.lf if pos is not None else None,
        )

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """Eq. 7 on ``out`` against ``gt`` (N, 3, H, W) in [0, 1].

        Returns the unweighted terms ``"l1"`` (L1(I, G)), ``"low"`` (Eq. 5, if consistency is on), ``"high"`` (Eq. 6,
        if the CLM is on), ``"multiscale"`` (if ``multiscale_l1``) and ``"total"`` = l1 + weight_high * high +
        weight_low * low + weight_multiscale * multiscale.
        """
        if not isinstance(out, MSFSTrainOutput):
            raise TypeError(f"MSFSNet.loss expects an MSFSTrainOutput, got {type(out).__name__}")
        terms: LossTerms = {"l1": F.l1_loss(out.restored, gt)}
        total = terms["l1"]
        if self.use_consistency:
            assert out.pos_lf is not None
            terms["low"] = consistency_loss(out.enc_lf, out.pos_lf)
            total = total + self.weight_low * terms["low"]
        if self.use_clm:
            assert out.dec_hf is not None and out.pos_hf is not None
            terms["high"] = contrastive_loss(out.dec_hf, out.pos_hf, out.enc_hf, eps=self.contrastive_eps)
            total = total + self.weight_high * terms["high"]
        if self.multiscale_l1:
            gt_2 = F.interpolate(gt, scale_factor=0.5, mode="bilinear")
            gt_4 = F.interpolate(gt, scale_factor=0.25, mode="bilinear")
            terms["multiscale"] = F.l1_loss(out.restored_half, gt_2) + F.l1_loss(out.restored_quarter, gt_4)
            total = total + self.weight_multiscale * terms["multiscale"]
        terms["total"] = total
        return terms


# --------------------------------------------------------------------------------------------------------------------
# Registered factories
# --------------------------------------------------------------------------------------------------------------------


def _build(name: str, fixed: dict[str, Any], overrides: dict[str, Any]) -> MSFSNet:
    """MSFSNet(**overrides, **fixed); an override of a setting that defines the variant is an error."""
    clash = sorted(set(fixed) & set(overrides))
    if clash:
        raise TypeError(f"{name} fixes {clash}; use another registered variant instead of overriding them")
    return MSFSNet(**overrides, **fixed)


@register_model
def msfsnet(**overrides: Any) -> MSFSNet:
    """MSFS-Net as released (C = 64, 8 ResBlocks, 10 + 2x30 RCABs; 21,586,291 parameters); paper losses (Eq. 7)."""
    return _build("msfsnet", {}, overrides)


@register_model
def msfsnet_tiny(**overrides: Any) -> MSFSNet:
    """The same architecture at CPU size for tests and smoke runs: C = 16, 1 ResBlock, 1 + 2x2 RCABs, reduction 4."""
    defaults: dict[str, Any] = {
        "channels": 16,
        "encoder_blocks": 1,
        "latent_blocks": 1,
        "decoder_blocks": 2,
        "reduction": 4,
    }
    return _build("msfsnet_tiny", {}, {**defaults, **overrides})


@register_model
def msfsnet_ablation_nofsm_clm(**overrides: Any) -> MSFSNet:
    """Table 3 row 1: w/o FSM (PlainBlock), with CSFFM and CLM, w/o consistency."""
    return _build("msfsnet_ablation_nofsm_clm", {"use_fsm": False, "use_consistency": False}, overrides)


@register_model
def msfsnet_ablation_nofsm_consistency(**overrides: Any) -> MSFSNet:
    """Table 3 row 2: w/o FSM (PlainBlock), with CSFFM and consistency, w/o CLM."""
    return _build("msfsnet_ablation_nofsm_consistency", {"use_fsm": False, "use_clm": False}, overrides)


@register_model
def msfsnet_ablation_nocsffm(**overrides: Any) -> MSFSNet:
    """Table 3 row 3: w/o CSFFM (plain concatenation skip); FSM, CLM and consistency on."""
    return _build("msfsnet_ablation_nocsffm", {"use_csffm": False}, overrides)


@register_model
def msfsnet_ablation_noclm(**overrides: Any) -> MSFSNet:
    """Table 3 row 4: w/o CLM (no Eq. 6); FSM, CSFFM and consistency on."""
    return _build("msfsnet_ablation_noclm", {"use_clm": False}, overrides)


@register_model
def msfsnet_ablation_noconsistency(**overrides: Any) -> MSFSNet:
    """Table 3 row 5: w/o consistency (no Eq. 5); FSM, CSFFM and CLM on."""
    return _build("msfsnet_ablation_noconsistency", {"use_consistency": False}, overrides)
