"""Stripformer: a strip transformer (intra- and inter-strip attention over rows and columns) for fast deblurring.

Paper: F.-J. Tsai, Y.-T. Peng, Y.-Y. Lin, C.-C. Tsai and C.-W. Lin, "Stripformer: Strip Transformer for Fast Image
Deblurring", ECCV 2022 (arXiv:2204.04627). Upstream: https://github.com/pp00704831/Stripformer-ECCV-2022-@9efba88
(``models/Stripformer.py``; ``models/losses.py``; ``config/config_Stripformer_gopro.yaml``; test scripts
``predict_GoPro_test_results.py``, ``predict_RealBlur_{J,R}_test_results.py``). This file is a re-implementation, not
a copy.

The image, shifted to [-0.5, 0.5], goes through a convolutional encoder (``Embeddings``: 64 channels at full
resolution, 128 at 1/2, 320 at 1/4, each level three residual pairs of 3x3 convs, LeakyReLU 0.2), twelve strip
transformer blocks at 1/4 resolution alternating ``Intra_SA`` and ``Inter_SA`` (320 channels, 5 heads), and a decoder
(``Embeddings_output``: transposed conv to 1/2 resolution and 192 channels, six more blocks there with 3 heads,
transposed conv to full resolution, two residual conv pairs, a conv to RGB with LeakyReLU), added to the shifted input.
``Intra_SA`` splits the normalised channels in two halves: one attends along each row (tokens = pixels of the row),
the other along each column; ``Inter_SA`` does the same with whole rows (columns) as tokens, each token the row's
C/2 x W values. Both fuse the halves with a 1x1 conv, add, then an MLP (4x) on LayerNorm, and a depthwise 3x3
positional conv (``PEG``) added in.

``stripformer`` has 19,708,611 parameters. The release's one network has no constructor arguments; widths, heads and
block counts are arguments here (the release's values by default) for ``stripformer_tiny``. Module names and shapes
are the release's, so ``Stripformer_{gopro,realblur_J,realblur_R}.pth`` (bare state dicts saved under
``nn.DataParallel``: ``module.`` keys, stripped by ``models.load_checkpoint``) load strictly.

Deviations from the release:
    * Input offset: the release's test scripts feed ``img / 255 - 0.5`` and add 0.5 to the output; here ``restore``
      does both, so the model's contract (RGB in [0, 1]) holds.
    * Padding: ``predict_GoPro_test_results.py`` pads nothing (1280x720 is a multiple of 4, all the network needs);
      ``predict_RealBlur_*_test_results.py`` reflect-pad to a multiple of 8 and crop back. ``pad_multiple`` 8 with
      reflect padding reproduces both (GoPro and HIDE frames are multiples of 8).
    * Attention: ``F.scaled_dot_product_attention`` with the release's scale 1/sqrt(head size) (Inter_SA's head size
      is (C/2 / heads) x W, so its scale depends on the image width, as released). When H == W the release stacks
      the row and column strips into one batch; the attention is the same.
    * LayerNorm (``nn.LayerNorm``, eps 1e-5) is applied to the (N, H, W, C) view instead of (N, HW, C): same values.
    * Loss: the release's ``Stripformer_Loss``, Charbonnier (eps 1e-3) + 0.05 edge + 0.0005 contrastive, all on the
      shifted images; the contrastive term compares VGG-19 ``features[:12]`` (relu3_1) of the restoration with the
      sharp and the blurry image where the two differ (mean absolute difference > 0.01). It needs torchvision's
      ImageNet VGG-19 weights placed by hand, so it is off unless ``contrastive=True`` (the release recipe,
      ``conf/train/stripformer.yaml``, turns it on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import charbonnier, edge_loss, vgg19_features

VGG_RELU3_1 = 11
"""Index of relu3_1 in ``torchvision.models.vgg19().features`` (``Vgg19.slice1`` keeps ``features[0:12]``)."""

LOSS_WEIGHTS = {"charbonnier": 1.0, "edge": 0.05, "contrastive": 0.0005}
"""``Stripformer_Loss``: the weight of each term."""


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2)  # the release's is in place; the values are the same


def _conv_pair(c: int) -> nn.Sequential:
    """conv3x3, LeakyReLU, conv3x3 at ``c`` channels (keys ``.0``, ``.2``)."""
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), _act(), nn.Conv2d(c, c, 3, padding=1))


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def strip_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """The release's ``Attention``: multi-head softmax attention, scale 1/sqrt(C / heads); (B, N, C) -> (B, N, C)."""
    b, n, c = q.shape
    out = F.scaled_dot_product_attention(
        _heads(q, heads), _heads(k, heads), _heads(v, heads), scale=1 / math.sqrt(c // heads)
    )
    return out.transpose(1, 2).reshape(b, n, c)


class Mlp(nn.Module):
    """Token MLP: Linear(C, 4C), GELU, Linear(4C, C); xavier-uniform weights, N(0, 1e-6) biases as released."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PEG(nn.Module):
    """Conditional positional encoding: x + depthwise conv3x3(x)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.PEG = nn.Conv2d(hidden_size, hidden_size, 3, padding=1, groups=hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.PEG(x) + x


class _StripBlock(nn.Module):
    """What Intra_SA and Inter_SA share: (N, C, H, W) -> (N, C, H, W), norm -> two strip attentions -> fuse,
    residual; MLP on norm, residual; PEG. Subclasses define ``_strips(x_h, x_v)`` on the two channel halves."""

    def _norm(self, norm: nn.LayerNorm, x: Tensor) -> Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x_h, x_v = self.conv_input(self._norm(self.attention_norm, x)).chunk(2, dim=1)
        x = self.fuse_out(torch.cat(self._strips(x_h, x_v), dim=1)) + x
        tokens = x.permute(0, 2, 3, 1)
        tokens = tokens + self.ffn(self.ffn_norm(tokens))
        return self.PEG(tokens.permute(0, 3, 1, 2))


class Intra_SA(_StripBlock):
    """Intra-strip attention: one half of the channels attends along each row, the other along each column."""

    def __init__(self, dim: int, head_num: int) -> None:
        super().__init__()
        self.hidden_size = dim // 2
        self.head_num = head_num
        self.attention_norm = nn.LayerNorm(dim)
        self.conv_input = nn.Conv2d(dim, dim, 1)
        self.qkv_local_h = nn.Linear(self.hidden_size, self.hidden_size * 3)
        self.qkv_local_v = nn.Linear(self.hidden_size, self.hidden_size * 3)
        self.fuse_out = nn.Conv2d(dim, dim, 1)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = Mlp(dim)
        self.PEG = PEG(dim)

    def _strips(self, x_h: Tensor, x_v: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x_h.shape
        rows = self.qkv_local_h(x_h.permute(0, 2, 3, 1).reshape(b * h, w, c)).chunk(3, dim=2)
        cols = self.qkv_local_v(x_v.permute(0, 3, 2, 1).reshape(b * w, h, c)).chunk(3, dim=2)
        out_h = strip_attention(*rows, self.head_num).reshape(b, h, w, c).permute(0, 3, 1, 2)
        out_v = strip_attention(*cols, self.head_num).reshape(b, w, h, c).permute(0, 3, 2, 1)
        return out_h, out_v


class Inter_SA(_StripBlock):
    """Inter-strip attention: whole rows (one half of the channels) and whole columns (the other) are the tokens."""

    def __init__(self, dim: int, head_num: int) -> None:
        super().__init__()
        self.hidden_size = dim
        self.head_num = head_num
        self.attention_norm = nn.LayerNorm(dim)
        self.conv_input = nn.Conv2d(dim, dim, 1)
        self.conv_h = nn.Conv2d(dim // 2, 3 * (dim // 2), 1)
        self.conv_v = nn.Conv2d(dim // 2, 3 * (dim // 2), 1)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = Mlp(dim)
        self.fuse_out = nn.Conv2d(dim, dim, 1)
        self.PEG = PEG(dim)

    def _strips(self, x_h: Tensor, x_v: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x_h.shape
        # A row token holds its C/2 x W values channel-major (the release's permute(0, 2, 1, 3).view(B, H, -1)).
        rows = [t.permute(0, 2, 1, 3).reshape(b, h, c * w) for t in self.conv_h(x_h).chunk(3, dim=1)]
        cols = [t.permute(0, 3, 1, 2).reshape(b, w, c * h) for t in self.conv_v(x_v).chunk(3, dim=1)]
        out_h = strip_attention(*rows, self.head_num).reshape(b, h, c, w).permute(0, 2, 1, 3)
        out_v = strip_attention(*cols, self.head_num).reshape(b, w, c, h).permute(0, 2, 3, 1)
        return out_h, out_v


def _strip_blocks(owner: nn.Module, prefix: str, count: int, dim: int, heads: int) -> list[nn.Module]:
    """Register ``count`` alternating Intra_SA / Inter_SA blocks as ``<prefix>1`` ... on ``owner``, in order."""
    blocks = []
    for i in range(1, count + 1):
        block = Intra_SA(dim, heads) if i % 2 else Inter_SA(dim, heads)
        owner.add_module(f"{prefix}{i}", block)
        blocks.append(block)
    return blocks


class Embeddings(nn.Module):
    """The encoder: (N, 3, H, W) -> (features at 1/4 with ``c3`` channels, level-1 skip (c1), level-2 skip (c2))."""

    def __init__(self, c1: int, c2: int, c3: int) -> None:
        super().__init__()
        self.activation = _act()
        self.en_layer1_1 = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), _act())
        self.en_layer1_2, self.en_layer1_3, self.en_layer1_4 = _conv_pair(c1), _conv_pair(c1), _conv_pair(c1)
        self.en_layer2_1 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), _act())
        self.en_layer2_2, self.en_layer2_3, self.en_layer2_4 = _conv_pair(c2), _conv_pair(c2), _conv_pair(c2)
        self.en_layer3_1 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), _act())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hx = self.en_layer1_1(x)
        for pair in (self.en_layer1_2, self.en_layer1_3, self.en_layer1_4):
            hx = self.activation(pair(hx) + hx)
        residual_1 = hx
        hx = self.en_layer2_1(hx)
        for pair in (self.en_layer2_2, self.en_layer2_3, self.en_layer2_4):
            hx = self.activation(pair(hx) + hx)
        return self.en_layer3_1(hx), residual_1, hx


class Embeddings_output(nn.Module):
    """The decoder: (features at 1/4, level-1 skip, level-2 skip) -> (N, 3, H, W) residual in the shifted range."""

    def __init__(self, c1: int, c2: int, c3: int, dim: int, heads: int, blocks: int) -> None:
        super().__init__()
        self.activation = _act()
        self.de_layer3_1 = nn.Sequential(nn.ConvTranspose2d(c3, dim, 4, stride=2, padding=1), _act())
        self.de_layer2_2 = nn.Sequential(nn.Conv2d(dim + c2, dim, 1), _act())
        self.blocks = _strip_blocks(self, "de_block_", blocks, dim, heads)
        self.de_layer2_1 = nn.Sequential(nn.ConvTranspose2d(dim, c1, 4, stride=2, padding=1), _act())
        self.de_layer1_3 = nn.Sequential(nn.Conv2d(2 * c1, c1, 1), _act(), nn.Conv2d(c1, c1, 3, padding=1))
        self.de_layer1_2 = _conv_pair(c1)
        self.de_layer1_1 = nn.Sequential(nn.Conv2d(c1, 3, 3, padding=1), _act())

    def forward(self, x: Tensor, residual_1: Tensor, residual_2: Tensor) -> Tensor:
        hx = self.de_layer2_2(torch.cat((self.de_layer3_1(x), residual_2), dim=1))
        for block in self.blocks:
            hx = block(hx)
        hx = self.de_layer2_1(hx)
        hx = self.activation(self.de_layer1_3(torch.cat((hx, residual_1), dim=1)) + hx)
        hx = self.activation(self.de_layer1_2(hx) + hx)
        return self.de_layer1_1(hx)


@dataclass
class StripformerTrainOutput(TrainOutput):
    """``Stripformer.forward_train``: the restoration and the blurry input (the contrastive term's negative)."""

    blurry: Tensor


class Stripformer(DeblurModel):
    """Stripformer: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 8 (see the module docstring: 4 for the network, 8 as the release's
    RealBlur script pads).

    Args:
        widths: encoder channels at full, 1/2 and 1/4 resolution (64, 128, 320).
        heads: attention heads of the 1/4-resolution blocks (5).
        blocks: strip blocks at 1/4 resolution, alternating intra and inter (12).
        decoder_dim, decoder_heads, decoder_blocks: the same at 1/2 resolution in the decoder (192, 3, 6).
        contrastive: add the release's VGG-19 contrastive term to the loss (needs the weights placed by hand).
    """

    pad_multiple = 8
    pad_mode = "reflect"

    def __init__(
        self,
        *,
        widths: tuple[int, int, int] = (64, 128, 320),
        heads: int = 5,
        blocks: int = 12,
        decoder_dim: int = 192,
        decoder_heads: int = 3,
        decoder_blocks: int = 6,
        contrastive: bool = False,
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        for dim, h in ((c3, heads), (decoder_dim, decoder_heads)):
            if dim % 2 or (dim // 2) % h:
                raise ValueError(f"Stripformer: half of {dim} channels must split into {h} heads")
        self.encoder = Embeddings(c1, c2, c3)
        self.blocks = _strip_blocks(self, "Trans_block_", blocks, c3, heads)
        self.decoder = Embeddings_output(c1, c2, c3, decoder_dim, decoder_heads, decoder_blocks)
        self.contrastive = contrastive
        self._vgg: list[nn.Module] = []  # a list keeps the frozen VGG out of the state dict

    def restore(self, lq: Tensor) -> Tensor:
        x = lq - 0.5
        hx, residual_1, residual_2 = self.encoder(x)
        for block in self.blocks:
            hx = block(hx)
        return self.decoder(hx, residual_1, residual_2) + x + 0.5

    def forward_train(self, lq: Tensor, gt: Tensor) -> StripformerTrainOutput:
        self.check_train_size(lq)
        return StripformerTrainOutput(restored=self.restore(lq), blurry=lq)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """``Stripformer_Loss`` on the shifted images: Charbonnier + 0.05 edge (+ 0.0005 contrastive)."""
        restored, sharp = out.restored - 0.5, gt - 0.5
        terms = {"charbonnier": charbonnier(restored, sharp), "edge": edge_loss(restored, sharp)}
        if self.contrastive:
            if not isinstance(out, StripformerTrainOutput):
                raise TypeError(f"the contrastive term needs StripformerTrainOutput, got {type(out).__name__}")
            terms["contrastive"] = self._contrastive(restored, sharp, out.blurry - 0.5)
        terms["total"] = sum(LOSS_WEIGHTS[k] * v for k, v in terms.items())
        return terms

    def _contrastive(self, restored: Tensor, sharp: Tensor, blurry: Tensor) -> Tensor:
        """``ContrastLoss``: sum over blurred pixels of d(restored, sharp) / (d(restored, blurry) + 1e-7) on relu3_1
        features (1/4 resolution), over the mask's sum; the mask (|sharp - blurry| averaged over channels > 0.01)
        is bilinearly downsampled by 4."""
        if not self._vgg:
            self._vgg.append(
                vgg19_features(VGG_RELU3_1, needed_by="Stripformer's contrastive loss", instead="contrastive=False")
            )
        vgg = self._vgg[0] = self._vgg[0].to(device=restored.device, dtype=restored.dtype)
        f_r, f_s, f_b = vgg(restored), vgg(sharp).detach(), vgg(blurry).detach()
        mask = ((sharp - blurry).abs().mean(dim=1, keepdim=True) > 0.01).to(restored.dtype)
        mask = F.interpolate(mask, scale_factor=0.25, mode="bilinear", align_corners=False)
        d_ap = (f_r - f_s).abs().mean(dim=1, keepdim=True)
        d_an = (f_r - f_b).abs().mean(dim=1, keepdim=True)
        return (d_ap / (d_an + 1e-7) * mask).sum() / mask.sum()


@register_model
def stripformer(**overrides: Any) -> Stripformer:
    """Stripformer, the released network: 19,708,611 parameters (paper: GoPro 33.08 dB / 0.962)."""
    return Stripformer(**overrides)


@register_model
def stripformer_tiny(**overrides: Any) -> Stripformer:
    """Stripformer at CPU size for smoke runs and tests (widths 8/16/40, two blocks a stage); not a published model."""
    return Stripformer(**{"widths": (8, 16, 40), "blocks": 2, "decoder_dim": 24, "decoder_blocks": 2, **overrides})
