"""DBGAN: the deblurring generator of "Deblurring by Realistic Blurring", an RRDB network with a global residual.

Paper: K. Zhang, W. Luo, Y. Zhong, L. Ma, B. Stenger, W. Liu and H. Li, "Deblurring by Realistic Blurring",
CVPR 2020 (arXiv:2004.01860).
Upstream: https://github.com/HDCVLab/Deblurring-by-Realistic-Blurring at 8f6944f (4 Nov 2022, README only; the code is
unchanged since 562ba09 / bf2c283, 10 Mar 2021).
The generator is ``RRDBNet`` of ``models/modules/architecture.py`` (l. 48-79), built from ``conv_block``,
``ResidualDenseBlock_5C``, ``RRDB``, ``ShortcutBlock_ZKH`` and ``sequential`` of ``models/modules/block.py``;
``models/networks.py`` ``define_G`` (l. 96-99) builds it from ``options/test/test.json`` (``RRDB_net``, nf 64, nb 16,
gc 32, CNA, no norm; ``scale`` 1), ``models/DB_model.py`` runs and trains it, ``test.py`` saves its outputs. The
``utils/`` folder of the release is a byte-identical copy of these files. The weights are ``G.pth`` (Google Drive
1uifaovTlmFExO9d2rOmcr5w7uUSLjHWK, the README's "Pre-trained model"), a bare state dict (``base_model.py``
``save_network`` strips DataParallel's ``module.``; ``load_network`` loads it strictly). This file is a
re-implementation, not a copy.

The network (``self.model``, an ``nn.Sequential`` whose indices are the release's keys):

    model.0        3x3 conv 3 -> nf
    model.1        ShortcutBlock_ZKH: x + sub2(sub1(x)), sub1 = nb RRDBs (``model.1.sub1.<i>``), sub2 = 3x3 conv
    model.2, .3    3x3 conv nf -> nf, LeakyReLU(0.2)
    model.4        3x3 conv nf -> 3

Each RRDB is three residual dense blocks (``RDB1``-``RDB3``), ``0.2 * RDB3(RDB2(RDB1(x))) + x``; each dense block has
four 3x3 conv + LeakyReLU(0.2) layers of ``gc`` channels fed with the concatenation of all earlier outputs
(``conv1.0`` ... ``conv4.0``), a fifth conv back to ``nf`` without activation (``conv5.0``) and ``0.2 * x5 + x``. The
restoration is ``clamp(lq + model(lq), 0, 1)`` (``RRDBNet.forward``): a global residual to the input, clamped.
``dbgan`` (nf 64, nb 16, gc 32) has 11,588,163 parameters, 719,424 per RRDB; ``dbgan_tiny`` (nf 16, nb 2, gc 8)
95,667. ESRGAN's upsampling layers would be built by ``RRDBNet.__init__``, but with ``scale`` 1 there are none (and
``self.model`` would not use them), so the state dict holds only the layers above: 8 + 30 nb tensors (488).

Input: the release reads PNGs with ``cv2.imread`` / 255 (``data/util.py`` ``read_img``) and flips BGR to RGB
(``data/BlurrySharp_dataset.py`` l. 118-124), i.e. RGB in [0, 1], the harness's convention; nothing is shifted or
rescaled. Output: ``test.py`` saves ``tensor2img(out)`` (``utils/util.py`` l. 71-95: clamp to [0, 1], ``(x *
255.0).round()``, numpy's ties to even, uint8 BGR) with ``cv2.imwrite``. ``DB_model.test_x8`` (the EDSR
flip/transpose self-ensemble, l. 83-121) exists but ``test.py`` calls ``model.test()``: the release's outputs are
single passes, and so are ours. The release has no scoring code in use (``utils/util.py`` ``calculate_psnr`` /
``calculate_ssim`` are never called; the latter would also score the whole 3-channel image three times).

Training (not in the release: no training script and no training options are published; only ``DB_model.py``
``optimize_parameters``, l. 67-72, the generator's supervised step). The content loss it implements, and ``loss``
here, is ``pixel_weight * criterion(restored, gt)`` with ``criterion`` ``nn.L1Loss`` (``pixel_criterion: l1``) or
``nn.MSELoss`` (``l2``), mean over all elements; the release's values of both options are unpublished, so the
defaults here (L1, weight 1) are those of the BasicSR (2018) PSNR template ``DB_model`` is forked from, not the
authors'. The paper's full method trains adversarially, which is not implemented here:
    * BGAN, a learning-to-blur GAN trained on unpaired sharp and real blurry images with the paper's "relativistic
      blur loss", blurs sharp images realistically and so "guides" DBGAN's training on such images (the abstract;
      its generator, discriminator and loss are not in the release at all);
    * DBGAN's generator (this network) adds an adversarial term against its discriminator to the content loss. The
      release's discriminators are ``Discriminator_VGG_128`` (VGG-style, 10 convs, BN, LeakyReLU, two linear
      layers, 128x128 input), its spectral-normalised ``Discriminator_VGG_128_SN``, and the 96 / 192 px variants
      (``architecture.py`` l. 87-271, ``networks.py`` ``define_D``); ``models/modules/loss.py`` has ``GANLoss``
      (vanilla BCE-with-logits / LSGAN / WGAN-GP) and a gradient penalty; ``architecture.py`` l. 280-
      ``VGGFeatureExtractor`` (VGG19 conv5_4 before ReLU, ``define_F``) serves a perceptual term. Which of these the
      paper used, and with which weights, is not in the release; the paper's text was not available to check.

Deviations from the release:
    * Padding: none is needed (no downsampling, ``pad_multiple = 1``); ``pad_mode`` is the default ``reflect``, which
      never applies. The release does not pad either.
    * Output clamping: ``restore`` returns the release's clamped output (``RRDBNet.forward`` clamps to [0, 1], in
      training too, so pixels beyond [0, 1] get no gradient, as in the release), not an unclamped one.
    * ``gc``: the release's ``RRDBNet`` ignores its ``gc`` argument and always builds 32-channel dense blocks
      (``architecture.py`` l. 57, ``gc=32``); here ``gc`` is honoured (32 for ``dbgan``, the same network).
    * Initialisation: the release initialises the generator for training with Kaiming-normal (fan-in) weights scaled
      by 0.1 and zero biases (``networks.py`` l. 103-104, ``init_weights(netG, 'kaiming', scale=0.1)``); the
      constructor does the same (from torch's generator), so a model trained here starts as the release's would.
    * LeakyReLUs are not in-place (the release's are); the values are the same.
    * ``nb = 1`` keeps the release's quirk: ``block.sequential`` returns a single RRDB unwrapped, so its keys are
      ``model.1.sub1.RDB1...`` rather than ``model.1.sub1.0.RDB1...``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput

NEG_SLOPE = 0.2
"""The LeakyReLU slope of ``block.act('leakyrelu')``."""

RESIDUAL_SCALE = 0.2
"""The residual scaling of ``ResidualDenseBlock_5C`` and ``RRDB`` (``x5.mul(0.2) + x``, ``out.mul(0.2) + x``)."""

INIT_SCALE = 0.1
"""``init_weights(netG, 'kaiming', scale=0.1)``: the release's generator initialisation for training."""

PIXEL_CRITERIA = ("l1", "l2")
"""``DB_model.py``'s ``pixel_criterion`` choices: ``nn.L1Loss`` and ``nn.MSELoss``."""


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    """``conv_block``'s convolution: 3x3, stride 1, zero padding 1, with bias."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


def _conv_act(in_ch: int, out_ch: int) -> nn.Sequential:
    """``conv_block(..., act_type='leakyrelu', mode='CNA')`` without norm: keys ``0.weight``, ``0.bias``."""
    return nn.Sequential(_conv(in_ch, out_ch), nn.LeakyReLU(NEG_SLOPE))


class ResidualDenseBlock5C(nn.Module):
    """The release's ``ResidualDenseBlock_5C``: (B, nc, H, W) -> (B, nc, H, W), ``0.2 * conv5(dense) + x``.

    ``conv1``-``conv4`` (conv + LeakyReLU, ``gc`` channels) each see the input concatenated with all earlier outputs;
    ``conv5`` (conv only, keys ``conv5.0``) maps ``nc + 4 gc`` channels back to ``nc``.
    """

    def __init__(self, nc: int, gc: int) -> None:
        super().__init__()
        self.conv1 = _conv_act(nc, gc)
        self.conv2 = _conv_act(nc + gc, gc)
        self.conv3 = _conv_act(nc + 2 * gc, gc)
        self.conv4 = _conv_act(nc + 3 * gc, gc)
        self.conv5 = nn.Sequential(_conv(nc + 4 * gc, nc))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(conv(torch.cat(feats, 1)))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """The release's ``RRDB``: three dense blocks ``RDB1``-``RDB3`` in a chain, ``0.2 * chain(x) + x``."""

    def __init__(self, nc: int, gc: int) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock5C(nc, gc)
        self.RDB2 = ResidualDenseBlock5C(nc, gc)
        self.RDB3 = ResidualDenseBlock5C(nc, gc)

    def forward(self, x: Tensor) -> Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * RESIDUAL_SCALE + x


class ShortcutBlockZKH(nn.Module):
    """The release's ``ShortcutBlock_ZKH``: ``x + sub2(sub1(x))`` (the RRDB trunk, then the trunk's last conv)."""

    def __init__(self, sub1: nn.Module, sub2: nn.Module) -> None:
        super().__init__()
        self.sub1 = sub1
        self.sub2 = sub2

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sub2(self.sub1(x))


class DBGAN(DeblurModel):
    """DBGAN's generator: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), clamped to [0, 1].

    Any H and W (``pad_multiple`` 1). The state dict is the release's ``G.pth`` (keys ``model.0.weight`` ...).

    Args:
        nf: trunk width (64 in the release).
        nb: number of RRDBs (16 in the release).
        gc: growth channels of the dense blocks (32 in the release, where it is hard-wired).
        pixel_criterion: the content loss, ``l1`` (``nn.L1Loss``) or ``l2`` (``nn.MSELoss``), as ``DB_model.py``
            offers; the release's choice is unpublished.
        pixel_weight: the content loss's weight (``DB_model.py``'s ``pixel_weight``, unpublished).
    """

    def __init__(
        self,
        *,
        nf: int = 64,
        nb: int = 16,
        gc: int = 32,
        pixel_criterion: Literal["l1", "l2"] = "l1",
        pixel_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("nf", nf), ("nb", nb), ("gc", gc)):
            if value < 1:
                raise ValueError(f"DBGAN: {name} must be >= 1, got {value}")
        if pixel_criterion not in PIXEL_CRITERIA:
            choices = ", ".join(PIXEL_CRITERIA)
            raise ValueError(f"DBGAN: pixel_criterion must be one of {choices}, got {pixel_criterion!r}")
        if pixel_weight <= 0:
            raise ValueError(f"DBGAN: pixel_weight must be > 0, got {pixel_weight}")
        self.pixel_criterion = pixel_criterion
        self.pixel_weight = pixel_weight
        blocks = [RRDB(nf, gc) for _ in range(nb)]
        # block.sequential(*rb_blocks) returns a lone block unwrapped: the release's keys for nb = 1.
        trunk: nn.Module = blocks[0] if nb == 1 else nn.Sequential(*blocks)
        self.model = nn.Sequential(
            _conv(3, nf),
            ShortcutBlockZKH(trunk, nn.Sequential(_conv(nf, nf))),
            _conv(nf, nf),
            nn.LeakyReLU(NEG_SLOPE),
            _conv(nf, 3),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """``networks.weights_init_kaiming(m, scale=0.1)`` on every conv: Kaiming-normal (a=0, fan-in) x 0.1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                with torch.no_grad():
                    module.weight.mul_(INIT_SCALE)
                    if module.bias is not None:
                        module.bias.zero_()

    def restore(self, lq: Tensor) -> Tensor:
        """(N, 3, H, W) -> ``clamp(lq + model(lq), 0, 1)``, ``RRDBNet.forward``."""
        return torch.clamp(lq + self.model(lq), 0.0, 1.0)

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """The restoration of the crops (``gt`` is unused); ``DB_model.optimize_parameters`` runs the same forward."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The content loss of ``DB_model.optimize_parameters``: ``pixel_weight * cri_pix(restored, gt)``.

        ``cri_pix`` is ``nn.L1Loss()`` or ``nn.MSELoss()`` (``pixel_criterion``), a mean over all elements. The
        adversarial terms of the paper (see the module docstring) are not implemented.
        """
        criterion = F.l1_loss if self.pixel_criterion == "l1" else F.mse_loss
        pixel = criterion(out.restored, gt)
        return {"pixel": pixel, "total": self.pixel_weight * pixel}


@register_model
def dbgan(**overrides: Any) -> DBGAN:
    """DBGAN's generator (release ``G.pth``): RRDBNet nf 64, nb 16, gc 32, 11,588,163 parameters."""
    return DBGAN(**{"nf": 64, "nb": 16, "gc": 32, **overrides})


@register_model
def dbgan_tiny(**overrides: Any) -> DBGAN:
    """DBGAN's generator at CPU size for smoke runs and tests: nf 16, nb 2, gc 8, 95,667 parameters; not published."""
    return DBGAN(**{"nf": 16, "nb": 2, "gc": 8, **overrides})
