"""DMPHN: the deep multi-patch hierarchical network, 1-2-4-8 and 1-2-4.

Paper: H. Zhang, Y. Dai, H. Li and P. Koniusz, "Deep Stacked Hierarchical Multi-patch Network for Image Deblurring",
CVPR 2019 (arXiv:1904.03468).
Upstream: https://github.com/HongguangZhang/DMPHN-cvpr19-master at HEAD 9fff261 (28 Jan 2023, README only). The
architecture is ``models.py``, the forward pass the one written out in ``DMPHN_1_2_4_8_test.py`` and
``DMPHN_1_2_4_test.py`` (the training scripts ``DMPHN_1_2_4_8.py`` and ``DMPHN_1_2_4.py`` run the same one), the
loss and recipe ``DMPHN_1_2_4_8.py``; the released GoPro weights are ``checkpoints/DMPHN_1_2_4_8/`` and
``checkpoints/DMPHN_1_2_4/``, last changed in 64af480 (21 Jul 2019). This file is a re-implementation, not a copy.

Every level ``k`` has its own ``Encoder`` (three stages at widths c, 2c, 4c, the last two entered by a stride-2
convolution; two residual conv-ReLU-conv blocks per stage) and ``Decoder`` (the mirror image, two 4x4 stride-2
transposed convolutions, ending in a 3x3 convolution to RGB). The image, shifted to [-0.5, 0.5], is cut into
non-overlapping patches, the coarsest level into the most (``PATCH_GRIDS``, rows x columns of the grid):

    level 1: 1 x 1 (the whole image)   level 2: 2 x 1 (top, bottom half)
    level 3: 2 x 2 (quarters)          level 4: 4 x 2 (each quarter halved again along H)

Bottom-up from the coarsest level: each patch, plus the decoder output of the level below for its region, is
encoded; the feature maps are stitched into the regions of the next finer level's grid and added to the (likewise
stitched) features the levels below passed up; the level's decoder runs on each such region, and its output is added
to the next finer level's input patches. Level 1's decoder output, shifted back by +0.5, is the restoration (no
global skip to the input). The 1-2-4-8 model (``levels=4``) has 7,232,524 parameters, the 1-2-4 model (``levels=3``)
5,424,393: 1,808,131 per level (868,288 encoder, 939,843 decoder).

The release saves one bare state dict per network, ``{encoder,decoder}_lv{1..4}.pkl``. The submodules here carry
those names (``release_modules``) and the release's layer names (``layer1``, ``layer2.0`` ...), so
``models.load_checkpoint(model, folder)`` loads a released folder strictly, and the state-dict keys are the
release's prefixed with the file name (``encoder_lv1.layer1.weight``).

Deviations from the release:
    * Padding: the release cuts patches with ``int(H / 2)`` and pads nothing, so it fails when a patch side is not a
      multiple of 4 (the encoder's two stride-2 convolutions): 1-2-4-8 needs H % 16 == 0 and W % 8 == 0, 1-2-4 both
      % 8 (GoPro's 1280x720 frames qualify). Here ``restore`` needs H and W to be multiples of ``pad_multiple``, 16
      for 1-2-4-8 (for W too, one number serving both sides) and 8 for 1-2-4; ``forward`` reflect-pads
      (``pad_mode = "reflect"``) the bottom/right to it and crops back. On GoPro frames nothing is padded.
    * Batched patches: the release calls each network once per patch (eight encoder_lv4 calls ...); here the patches
      of a level go through it as one batch, and stitching is a reshape instead of ``torch.cat``. The convolutions
      see exactly the same inputs; measured against the release's code with its GoPro weights on a 1280x720 GoPro
      frame, the outputs are bit-identical in float64 and float32 on the CPU (``tests/test_dmphn.py``).
    * The width (``channels``, 32 in the release) and the number of levels are constructor arguments, so that one
      class covers 1-2-4-8, 1-2-4 and the CPU-sized ``dmphn_tiny``; levels 1 and 2 (the paper's DMPHN-1 and
      DMPHN-1-2 ablations) follow the same scheme but have neither release code nor weights.
    * The release trains eight Adam optimisers, one per network, with identical settings; that is one Adam over all
      parameters (Adam is per-parameter).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput

PATCH_GRIDS: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (2, 2), (4, 2))
"""(rows, columns) of the patch grid at levels 1-4, as the release's test scripts cut the image."""

ENCODER_STRIDE = 4
"""The encoder's total downsampling (two stride-2 convolutions): every patch side must divide by it."""


def _residual_branch(channels: int) -> nn.Sequential:
    """conv3x3 -> ReLU -> conv3x3 at constant width; the release's keys ``<layer>.0`` and ``<layer>.2``."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
    )


class Encoder(nn.Module):
    """(B, 3, h, w), h and w multiples of 4 -> (B, 4c, h/4, w/4); the release's ``Encoder`` with width ``c``.

    Three stages: ``layer1`` (3x3 to c), ``layer5`` (3x3 stride 2 to 2c), ``layer9`` (3x3 stride 2 to 4c), each
    followed by two residual branches (``layer2``/``layer3``, ``layer6``/``layer7``, ``layer10``/``layer11``). The
    numbering and its gaps are the release's.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.layer1 = nn.Conv2d(3, c, 3, padding=1)
        self.layer2 = _residual_branch(c)
        self.layer3 = _residual_branch(c)
        self.layer5 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.layer6 = _residual_branch(2 * c)
        self.layer7 = _residual_branch(2 * c)
        self.layer9 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.layer10 = _residual_branch(4 * c)
        self.layer11 = _residual_branch(4 * c)

    def forward(self, x: Tensor) -> Tensor:
        stages = (
            (self.layer1, self.layer2, self.layer3),
            (self.layer5, self.layer6, self.layer7),
            (self.layer9, self.layer10, self.layer11),
        )
        for entry, branch_a, branch_b in stages:
            x = entry(x)
            x = branch_a(x) + x
            x = branch_b(x) + x
        return x


class Decoder(nn.Module):
    """(B, 4c, h, w) -> (B, 3, 4h, 4w); the release's ``Decoder`` with width ``c``.

    Two residual branches at 4c (``layer13``, ``layer14``), a 4x4 stride-2 transposed convolution to 2c
    (``layer16``), two at 2c (``layer17``, ``layer18``), one to c (``layer20``), two at c (``layer21``, ``layer22``),
    then a 3x3 convolution to RGB (``layer24``), no activation.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.layer13 = _residual_branch(4 * c)
        self.layer14 = _residual_branch(4 * c)
        self.layer16 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.layer17 = _residual_branch(2 * c)
        self.layer18 = _residual_branch(2 * c)
        self.layer20 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.layer21 = _residual_branch(c)
        self.layer22 = _residual_branch(c)
        self.layer24 = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        stages = (
            (self.layer13, self.layer14, self.layer16),
            (self.layer17, self.layer18, self.layer20),
            (self.layer21, self.layer22, self.layer24),
        )
        for branch_a, branch_b, exit_ in stages:
            x = branch_a(x) + x
            x = branch_b(x) + x
            x = exit_(x)
        return x


def split_patches(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """(N, C, H, W) -> (rows * cols * N, C, H / rows, W / cols): the grid's patches stacked along the batch axis.

    Patch-major: batch index ``(r * cols + c) * N + n`` holds row ``r``, column ``c`` of image ``n``.
    """
    rows, cols = grid
    n, ch, h, w = x.shape
    x = x.reshape(n, ch, rows, h // rows, cols, w // cols)
    return x.permute(2, 4, 0, 1, 3, 5).reshape(rows * cols * n, ch, h // rows, w // cols)


def merge_patches(x: Tensor, grid: tuple[int, int], n: int) -> Tensor:
    """The inverse of ``split_patches``: (rows * cols * N, C, h, w) -> (N, C, rows * h, cols * w)."""
    rows, cols = grid
    _, ch, h, w = x.shape
    x = x.reshape(rows, cols, n, ch, h, w).permute(2, 3, 0, 4, 1, 5)
    return x.reshape(n, ch, rows * h, cols * w)


class DMPHN(DeblurModel):
    """DMPHN: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of ``pad_multiple`` (16 for four levels, 8 for three; ``forward``
    pads). Submodules ``encoder_lv1`` ... ``decoder_lv<levels>``, as the release's checkpoint files.

    Args:
        levels: hierarchy depth: 4 for DMPHN-1-2-4-8, 3 for DMPHN-1-2-4 (the released models); 1 and 2 are the
            paper's DMPHN-1 and DMPHN-1-2.
        channels: width of the first encoder stage (32 in the release); the deeper stages have 2x and 4x.
    """

    def __init__(self, *, levels: int = 4, channels: int = 32) -> None:
        super().__init__()
        if not 1 <= levels <= len(PATCH_GRIDS):
            raise ValueError(f"DMPHN: levels must be 1 to {len(PATCH_GRIDS)}, got {levels}")
        if channels < 1:
            raise ValueError(f"DMPHN: channels must be >= 1, got {channels}")
        self.levels = levels
        self.pad_multiple = ENCODER_STRIDE * max(PATCH_GRIDS[levels - 1])
        # Created in the release scripts' order (encoders, then decoders), so that state_dict() lists them so.
        for k in range(1, levels + 1):
            setattr(self, f"encoder_lv{k}", Encoder(channels))
        for k in range(1, levels + 1):
            setattr(self, f"decoder_lv{k}", Decoder(channels))
        # The release's file names: one bare state dict ``<name>.pkl`` per submodule (``models.checkpoint``).
        self.release_modules: tuple[str, ...] = tuple(
            f"{part}_lv{k}" for part in ("encoder", "decoder") for k in range(1, levels + 1)
        )

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> the restoration; the release's forward pass, patches batched per level."""
        n = lq.shape[0]
        x = lq - 0.5
        residual: Tensor | None = None  # the level below's decoder output, on this level's patch grid
        carried: Tensor | None = None  # the features the levels below pass up, on this level's patch grid
        for level in range(self.levels, 0, -1):
            grid = PATCH_GRIDS[level - 1]
            parent = PATCH_GRIDS[level - 2] if level > 1 else grid
            patches = split_patches(x, grid)
            if residual is not None:
                patches = patches + residual
            encoder: nn.Module = getattr(self, f"encoder_lv{level}")
            decoder: nn.Module = getattr(self, f"decoder_lv{level}")
            feat = encoder(patches)
            if carried is not None:
                feat = feat + carried
            # Stitch this level's patches into the regions of the next finer level, which the decoder sees whole.
            if parent != grid:
                feat = split_patches(merge_patches(feat, grid, n), parent)
            residual = decoder(feat)
            carried = feat
        assert residual is not None  # levels >= 1
        return residual + 0.5

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """(N, 3, H, W) crops, H and W multiples of ``pad_multiple`` -> the restoration (``gt`` is unused)."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's loss (``DMPHN_1_2_4_8.py``, ``nn.MSELoss()``): the mean squared error of the restoration.

        The release computes it on images shifted by -0.5, which leaves the difference, hence the loss, unchanged.
        """
        mse = F.mse_loss(out.restored, gt)
        return {"mse": mse, "total": mse}


@register_model
def dmphn(**overrides: Any) -> DMPHN:
    """DMPHN-1-2-4-8 (release ``checkpoints/DMPHN_1_2_4_8``): four levels, width 32, 7,232,524 parameters."""
    return DMPHN(**{"levels": 4, "channels": 32, **overrides})


@register_model
def dmphn_1_2_4(**overrides: Any) -> DMPHN:
    """DMPHN-1-2-4 (release ``checkpoints/DMPHN_1_2_4``): three levels, width 32, 5,424,393 parameters."""
    return DMPHN(**{"levels": 3, "channels": 32, **overrides})


@register_model
def dmphn_tiny(**overrides: Any) -> DMPHN:
    """DMPHN-1-2-4-8 at CPU size for smoke runs and tests: width 8, 454,924 parameters; not a published model."""
    return DMPHN(**{"levels": 4, "channels": 8, **overrides})
