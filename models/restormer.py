"""Restormer: a U-Net of transformer blocks whose attention runs across channels, not pixels.

Paper: S. W. Zamir, A. Arora, S. Khan, M. Hayat, F. S. Khan and M.-H. Yang, "Restormer: Efficient Transformer for
High-Resolution Image Restoration", CVPR 2022 (arXiv:2111.09881). Upstream: https://github.com/swz30/Restormer@df766d5
(``basicsr/models/archs/restormer_arch.py``; recipe ``Motion_Deblurring/Options/Deblurring_Restormer.yml``; test
script ``Motion_Deblurring/test.py``). This file is a re-implementation, not a copy.

Every block (``TransformerBlock``) is: channel LayerNorm -> multi-Dconv head transposed attention (``Attention``,
MDTA: 1x1 conv to q, k, v, a 3x3 depthwise conv on each, then per head a C/heads x C/heads attention map between the
L2-normalised rows of q and k over all pixels, scaled by a learned ``temperature``, softmax, applied to v, 1x1 conv
out) added back; then LayerNorm -> gated-Dconv feed-forward (``FeedForward``, GDFN: 1x1 conv to 2 x ``int(2.66 C)``,
3x3 depthwise, GELU(x1) * x2, 1x1 conv back) added back. Four levels (48, 96, 192, 384 channels; 4, 6, 6, 8 blocks;
1, 2, 4, 8 heads), downsampling by a 3x3 conv halving the width then PixelUnshuffle(2), upsampling by a 3x3 conv
doubling it then PixelShuffle(2); the decoder concatenates the skips (1x1 conv to reduce at levels 3 and 2, none at
level 1, which stays at 96 channels), four refinement blocks, a 3x3 conv to RGB added to the input.

``restormer`` (the GoPro model, ``motion_deblurring.pth``, ``{"params": ...}``) has 26,126,644 parameters; module names,
shapes and registration order are the release's, so the file loads strictly.

Deviations from the release:
    * LayerNorm: the release rearranges (N, C, H, W) to (N, HW, C) and normalises the last axis; here the same
      statistics (mean and biased variance over channels, eps 1e-5) are taken over axis 1 in place. Same values.
    * Padding: as ``Motion_Deblurring/test.py`` (reflect padding to a multiple of 8, cropped back), the model's
      ``pad_mode``. An input too small to reflect falls back to replicate padding (``models.base.pad_to_multiple``).
    * The dual-pixel defocus branch (``dual_pixel_task``, ``skip_conv``) is not offered: no motion-deblurring release
      uses it.
    * TLC (Restormer-Local, megvii-research/TLC@8e87983 ``basicsr/models/archs/restormer_arch.py``): the release
      defines ``LocalAttention``/``RestormerLocal``; here ``Attention`` is a ``models.base.GlobalAttention`` and
      ``benchmark.evaluation.tlc.to_local`` runs its ``attend`` on TLC's overlapping windows.
    * Training: the release trains progressively (patch 128 to 384 with batch 8 to 1 per GPU over 300k iterations,
      a cosine-restart schedule with a constant first cycle); ``conf/train/restormer.yaml`` keeps its optimiser and
      loss at one crop size (the trainer has no progressive schedule), stated there.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, GlobalAttention


class WithBias_LayerNorm(nn.Module):
    """LayerNorm over the channels of (N, C, H, W), per pixel: weight and bias of size C, eps 1e-5."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class BiasFree_LayerNorm(nn.Module):
    """LayerNorm without centring or bias (the release's ``BiasFree`` option): x / sqrt(var + 1e-5) * weight."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight.view(1, -1, 1, 1)


class LayerNorm(nn.Module):
    """The release's wrapper: ``body`` is the ``WithBias`` (GoPro model) or ``BiasFree`` norm."""

    def __init__(self, channels: int, layer_norm_type: str) -> None:
        super().__init__()
        if layer_norm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"LayerNorm_type must be 'WithBias' or 'BiasFree', got {layer_norm_type!r}")
        self.body = BiasFree_LayerNorm(channels) if layer_norm_type == "BiasFree" else WithBias_LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class FeedForward(nn.Module):
    """GDFN: (N, C, H, W) -> (N, C, H, W) through 2 x ``int(C * expansion)`` gated channels."""

    def __init__(self, dim: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(GlobalAttention):
    """MDTA: (N, C, H, W) -> (N, C, H, W); per head, a (C/heads)^2 attention map over all H x W pixels.

    ``features``: the q, k, v maps (N, 3C, H, W) of the 1x1 and depthwise 3x3 convs; ``attend``: the transposed
    attention on them; ``project``: the 1x1 conv out.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: {dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def features(self, x: Tensor) -> Tensor:
        return self.qkv_dwconv(self.qkv(x))

    def attend(self, maps: Tensor) -> Tensor:
        n, c3, h, w = maps.shape
        q, k, v = (t.reshape(n, self.num_heads, c3 // (3 * self.num_heads), h * w) for t in maps.chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return (attn @ v).reshape(n, c3 // 3, h, w)

    def project(self, out: Tensor) -> Tensor:
        return self.project_out(out)


class TransformerBlock(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): x + MDTA(norm1(x)), then + GDFN(norm2(.))."""

    def __init__(self, dim: int, num_heads: int, expansion: float, bias: bool, layer_norm_type: str) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layer_norm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layer_norm_type)
        self.ffn = FeedForward(dim, expansion, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """A 3x3 conv from RGB to ``embed_dim`` channels (no bias)."""

    def __init__(self, in_c: int, embed_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """(N, C, H, W) -> (N, 2C, H/2, W/2): 3x3 conv to C/2, PixelUnshuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """(N, C, H, W) -> (N, C/2, 2H, 2W): 3x3 conv to 2C, PixelShuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Restormer(DeblurModel):
    """Restormer: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 8 (three 2x levels). The loss is the base class's L1 (mean), the
    release's ``pixel_opt`` (``L1Loss``, weight 1).

    Args:
        dim: channels at level 1 (48); level k has ``dim * 2**(k-1)``.
        num_blocks: transformer blocks per level, 1 to 4 (level 4 is the latent); the decoder repeats 1 to 3.
        num_refinement_blocks: blocks after the decoder, at level 1's decoder width (2 x ``dim``).
        heads: attention heads per level.
        ffn_expansion_factor: GDFN's hidden width relative to the block's (2.66).
        bias: whether the convolutions have biases (``False`` in every release).
        layer_norm_type: ``"WithBias"`` (motion deblurring) or ``"BiasFree"``.
    """

    pad_multiple = 8
    pad_mode = "reflect"  # Motion_Deblurring/test.py: F.pad(..., 'reflect') to a multiple of 8

    def __init__(
        self,
        *,
        dim: int = 48,
        num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, int, int, int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layer_norm_type: str = "WithBias",
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"Restormer: num_blocks {num_blocks} and heads {heads} need four levels each")

        def blocks(n: int, width: int, level: int) -> nn.Sequential:
            return nn.Sequential(
                *[TransformerBlock(width, heads[level], ffn_expansion_factor, bias, layer_norm_type) for _ in range(n)]
            )

        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        self.patch_embed = OverlapPatchEmbed(3, dim)
        self.encoder_level1 = blocks(num_blocks[0], d1, 0)
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = blocks(num_blocks[1], d2, 1)
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = blocks(num_blocks[2], d3, 2)
        self.down3_4 = Downsample(d3)
        self.latent = blocks(num_blocks[3], d4, 3)
        self.up4_3 = Upsample(d4)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, 1, bias=bias)
        self.decoder_level3 = blocks(num_blocks[2], d3, 2)
        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, 1, bias=bias)
        self.decoder_level2 = blocks(num_blocks[1], d2, 1)
        self.up2_1 = Upsample(d2)  # to d1 channels, concatenated with level 1's d1: the decoder runs at d2
        self.decoder_level1 = blocks(num_blocks[0], d2, 0)
        self.refinement = blocks(num_refinement_blocks, d2, 0)
        self.output = nn.Conv2d(d2, 3, 3, padding=1, bias=bias)

    def restore(self, lq: Tensor) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(lq))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + lq


@register_model
def restormer(**overrides: Any) -> Restormer:
    """Restormer, the GoPro motion-deblurring model: 26,126,644 parameters (paper: GoPro 32.92 dB / 0.961)."""
    return Restormer(**overrides)


@register_model
def restormer_tiny(**overrides: Any) -> Restormer:
    """Restormer at CPU size for smoke runs and tests: width 8, one block per level; not a published model."""
    return Restormer(**{"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, **overrides})
