"""FFTformer: a U-Net of frequency-domain self-attention and feed-forward blocks on 8x8 patches.

Paper: L. Kong, J. Dong, J. Ge, M. Li and J. Pan, "Efficient Frequency Domain-based Transformers for High-Quality
Image Deblurring", CVPR 2023 (arXiv:2211.12250). Upstream: https://github.com/kkkls/FFTformer@01306b5
(``basicsr/models/archs/fftformer_arch.py``; recipe ``options/train/GoPro.yml``; test script ``test.py``). This file is
a re-implementation, not a copy.

Every block is LayerNorm -> (decoder only) frequency-domain self-attention (``FSAS``: 1x1 conv to 6C, depthwise 3x3,
split into q, k, v of 2C; q and k cut into 8x8 patches, multiplied in the Fourier domain (``rfft2``/``irfft2``, i.e.
a circular correlation per patch), LayerNorm, times v, 1x1 conv back) added back; then LayerNorm -> discriminative
frequency-domain feed-forward (``DFFN``: 1x1 conv to 2 x 3C, each 8x8 patch's spectrum multiplied by a learned
(2 x 3C, 8, 5) filter ``fft``, depthwise 3x3, GELU(x1) * x2, 1x1 conv) added back. Three levels (48, 96, 192
channels; 6, 6, 12 encoder blocks without attention, the same counts with attention in the decoder, four refinement
blocks), bilinear down/upsampling by 2 followed by a 3x3 conv, and ``Fuse`` merging each skip with a 1x1 conv, a
feed-forward block (expansion 2.66) and a 1x1 conv whose two halves are summed. The output is a residual on the input.

``fftformer`` has 16,560,474 parameters (``reduce_chan_level2`` is built but unused by the release's forward; it is
kept, frozen, so that ``fftformer_GoPro.pth``, a bare state dict, loads strictly).

Deviations from the release:
    * FFT precision: the release casts the patches to float32 before ``rfft2`` (``.float()``, which keeps half-precision
      training stable). Here half and bfloat16 inputs are cast to float32 the same way and float32 is unchanged (the
      release's precision), but float64 stays float64, so that the float64 parity tests measure the architecture, not
      one float32 rounding.
    * Padding: as ``test.py`` (reflect padding to a multiple of 32, cropped back), the model's ``pad_mode``.
    * ``num_blocks`` takes the three levels the network uses (the release's default list has a fourth, unused entry).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import fft_l1
from models.restormer import LayerNorm, OverlapPatchEmbed  # the same modules, same keys

PATCH = 8
"""Side of the square patches whose spectra FSAS and DFFN work on."""

FFT_LOSS_WEIGHT = 0.1
"""``fft_loss_opt.loss_weight`` of ``options/train/GoPro.yml`` (beside ``pixel_opt``, L1, weight 1)."""


def _patches(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H/8, W/8, 8, 8), H and W multiples of 8; in float32 or wider for the FFT."""
    n, c, h, w = x.shape
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return x.reshape(n, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 2, 4, 3, 5)


def _unpatches(x: Tensor) -> Tensor:
    """Inverse of ``_patches``: (N, C, h, w, 8, 8) -> (N, C, 8h, 8w)."""
    n, c, h, w = x.shape[:4]
    return x.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h * PATCH, w * PATCH)


class DFFN(nn.Module):
    """Discriminative frequency-domain feed-forward: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.patch_size = PATCH
        self.dim = dim
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.fft = nn.Parameter(torch.ones((hidden * 2, 1, 1, PATCH, PATCH // 2 + 1)))
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        spectrum = torch.fft.rfft2(_patches(self.project_in(x))) * self.fft
        x = _unpatches(torch.fft.irfft2(spectrum, s=(PATCH, PATCH)))
        x1, x2 = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class FSAS(nn.Module):
    """Frequency-domain self-attention: (N, C, H, W) -> (N, C, H, W), q and k correlated per 8x8 patch."""

    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.to_hidden = nn.Conv2d(dim, dim * 6, 1, bias=bias)
        self.to_hidden_dw = nn.Conv2d(dim * 6, dim * 6, 3, padding=1, groups=dim * 6, bias=bias)
        self.project_out = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.norm = LayerNorm(dim * 2, "WithBias")
        self.patch_size = PATCH

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.to_hidden_dw(self.to_hidden(x)).chunk(3, dim=1)
        out = torch.fft.rfft2(_patches(q)) * torch.fft.rfft2(_patches(k))
        out = self.norm(_unpatches(torch.fft.irfft2(out, s=(PATCH, PATCH))))
        return self.project_out(v * out)


class TransformerBlock(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): [x + FSAS(norm1(x)) when ``att``], then + DFFN(norm2(.))."""

    def __init__(self, dim: int, ffn_expansion_factor: float = 2.66, bias: bool = False, att: bool = False) -> None:
        super().__init__()
        self.att = att
        if att:
            self.norm1 = LayerNorm(dim, "WithBias")
            self.attn = FSAS(dim, bias)
        self.norm2 = LayerNorm(dim, "WithBias")
        self.ffn = DFFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.att:
            x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Fuse(nn.Module):
    """Skip fusion: (decoder, encoder) at ``n_feat`` channels each -> ``n_feat`` channels."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.n_feat = n_feat
        self.att_channel = TransformerBlock(dim=n_feat * 2)
        self.conv = nn.Conv2d(n_feat * 2, n_feat * 2, 1)
        self.conv2 = nn.Conv2d(n_feat * 2, n_feat * 2, 1)

    def forward(self, enc: Tensor, dnc: Tensor) -> Tensor:
        x = self.conv2(self.att_channel(self.conv(torch.cat((enc, dnc), dim=1))))
        e, d = torch.split(x, [self.n_feat, self.n_feat], dim=1)
        return e + d


class Downsample(nn.Module):
    """(N, C, H, W) -> (N, 2C, H/2, W/2): bilinear 0.5x (align_corners False), 3x3 conv."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """(N, C, H, W) -> (N, C/2, 2H, 2W): bilinear 2x (align_corners False), 3x3 conv."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class FFTformer(DeblurModel):
    """FFTformer: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 32 (8x8 patches at 1/4 resolution).

    Args:
        dim: channels at level 1 (48); level k has ``dim * 2**(k-1)``.
        num_blocks: blocks per level (6, 6, 12): without attention in the encoder, with it in the decoder.
        num_refinement_blocks: attention blocks after the decoder (4).
        ffn_expansion_factor: DFFN's hidden width relative to the block's (3; the ``Fuse`` blocks keep 2.66).
        bias: whether the block convolutions have biases (``False`` as released).
    """

    pad_multiple = 32
    pad_mode = "reflect"  # test.py: F.pad(..., mode='reflect') to a multiple of 32

    def __init__(
        self,
        *,
        dim: int = 48,
        num_blocks: tuple[int, int, int] = (6, 6, 12),
        num_refinement_blocks: int = 4,
        ffn_expansion_factor: float = 3,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 3:
            raise ValueError(f"FFTformer: num_blocks needs three levels, got {num_blocks}")

        def blocks(n: int, width: int, att: bool) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(width, ffn_expansion_factor, bias, att) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(3, dim)
        self.encoder_level1 = blocks(num_blocks[0], dim, False)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = blocks(num_blocks[1], dim * 2, False)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = blocks(num_blocks[2], dim * 4, False)
        self.decoder_level3 = blocks(num_blocks[2], dim * 4, True)
        self.up3_2 = Upsample(dim * 4)
        # Built but unused by the release's forward: kept for strict loading, frozen (no loss reaches it).
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias).requires_grad_(False)
        self.decoder_level2 = blocks(num_blocks[1], dim * 2, True)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = blocks(num_blocks[0], dim, True)
        self.refinement = blocks(num_refinement_blocks, dim, True)
        self.fuse2 = Fuse(dim * 2)
        self.fuse1 = Fuse(dim)
        self.output = nn.Conv2d(dim, 3, 3, padding=1, bias=bias)

    def restore(self, lq: Tensor) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(lq))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        dec3 = self.decoder_level3(self.encoder_level3(self.down2_3(enc2)))
        dec2 = self.decoder_level2(self.fuse2(self.up3_2(dec3), enc2))
        dec1 = self.decoder_level1(self.fuse1(self.up2_1(dec2), enc1))
        return self.output(self.refinement(dec1)) + lq

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """``pixel_opt`` (L1, weight 1) + ``fft_loss_opt`` (L1 of the stacked real/imaginary 2-D spectra, 0.1)."""
        l1 = F.l1_loss(out.restored, gt)
        fft = fft_l1(out.restored, gt)
        return {"l1": l1, "fft": fft, "total": l1 + FFT_LOSS_WEIGHT * fft}


@register_model
def fftformer(**overrides: Any) -> FFTformer:
    """FFTformer, the GoPro model: 16,560,474 parameters (paper: GoPro 34.21 dB / 0.969)."""
    return FFTformer(**overrides)


@register_model
def fftformer_tiny(**overrides: Any) -> FFTformer:
    """FFTformer at CPU size for smoke runs and tests: width 8, one block per level; not a published model."""
    return FFTformer(**{"dim": 8, "num_blocks": (1, 1, 1), "num_refinement_blocks": 1, **overrides})
