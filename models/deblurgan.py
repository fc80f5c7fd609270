"""DeblurGAN: the ResNet generator of a conditional GAN for blind motion deblurring.

Paper: O. Kupyn, V. Budzan, M. Mykhailych, D. Mishkin and J. Matas, "DeblurGAN: Blind Motion Deblurring Using
Conditional Adversarial Networks", CVPR 2018 (arXiv:1711.07064).
Upstream: https://github.com/KupynOrest/DeblurGAN at HEAD 2499a87 (25 Dec 2019). Generator ``models/networks.py``
(``ResnetGenerator``, ``ResnetBlock``, ``get_norm_layer``), built as ``models/test_model.py`` builds it from the
defaults of ``options/base_options.py`` and the README's test command (``--model test --dataset_mode single
--learn_residual``): ``resnet_9blocks``, ``norm instance``, dropout on (``no_dropout`` False), ``learn_residual``,
reflection padding (``ResnetGenerator``'s default ``padding_type``). Input pipeline ``data/base_dataset.py``
(``get_transform``), output ``util/util.py`` (``tensor2im``), loss ``models/losses.py`` and
``models/conditional_gan_model.py``. This file is a re-implementation, not a copy.

Architecture (``model``, one ``nn.Sequential``; its indices are the release's state-dict keys ``model.<i>``):
reflection pad 3, 7x7 convolution to c, two 3x3 stride-2 convolutions to 2c and 4c, ``n_blocks`` residual blocks at
4c, two 3x3 stride-2 transposed convolutions (``output_padding=1``) back to c, each of these convolutions followed
by InstanceNorm (no affine parameters) and ReLU; reflection pad 3, 7x7 convolution to RGB, tanh. Every convolution
but the last has a bias (the release's ``use_bias`` for InstanceNorm). With ``learn_residual`` the output is
``clamp(input + tanh(...), -1, 1)``. c = 64 in the release (the HEAD code hard-codes 64/128/256).

The residual block at HEAD has ONE convolution: PR #134 (commits afc149d..68aa1b1, March 2019, a contributor's
refactor) rewrote ``ResnetBlock`` as ``A + B + [Dropout] if use_dropout else [] + A + [norm]``, which Python parses
as ``(A + B + [Dropout]) if use_dropout else ([] + A + [norm])``: with dropout (the test default) the block is
``pad, conv, norm, ReLU, Dropout(0.5)`` (keys ``conv_block.1``, ``conv_block.2``), without it ``pad, conv, norm``
(no ReLU). That network (``block_convs=1``) has 6,067,459 parameters (72 state-dict entries); it is what HEAD's
test script builds, and the checkpoint committed to the repository by that PR (``checkpoints/experiment_name/
latest_net_G.pth``, provenance not stated) is the only file that fits it. The authors' own code before the PR
(a6f4ad0, 4 Jun 2018) has the pix2pix block with two convolutions, ``pad, conv, norm, ReLU, [Dropout], pad, conv,
norm`` (keys ``conv_block.1``/``.2``/``.6``/``.7`` with dropout): ``block_convs=2``, 11,378,179 parameters (94
entries). The authors' "WILD" weights (Dropbox, then Google Drive ``1liKzdjMRHZ-i5MWhC72EL7UZLNPj5_8Y``, now dead:
issues #228/#230/#234) have that layout: HEAD refuses them with unexpected keys ``model.10.conv_block.6.weight``,
``model.10.conv_block.7.running_mean`` ... (issues #145, #168). They were saved by PyTorch 0.3, whose InstanceNorm
kept ``running_mean``/``running_var`` but had no ``num_batches_tracked``; HEAD's ``get_norm_layer`` adds
``track_running_stats=True`` (afc149d) so that PyTorch >= 0.4 has those keys at all, and adds ``num_batches_tracked``
with them. ``InstanceNorm`` here holds the same buffers, with ``num_batches_tracked`` for ``block_convs=1`` (HEAD,
PyTorch >= 1.0) and without it for ``block_convs=2`` (the authors' PyTorch 0.3 files), so either release file loads
with ``load_state_dict(strict=True)``. The buffers are never read (see train/eval below).

Train and eval mode (the release never calls ``eval()``): at test time its generator runs in train mode, so
InstanceNorm normalises with each image's own statistics (as PyTorch 0.3's InstanceNorm did in both modes; it
ignored its running statistics unless told otherwise), and ``Dropout(0.5)`` is live: the release's outputs are
random, a new dropout mask per image and per run. Here:
    * ``model.eval()`` (what the harness evaluates): instance statistics, dropout off (its expectation, identity
      under PyTorch's inverted dropout). Deterministic; equal to the release's network with its ``Dropout`` modules
      alone put in eval mode.
    * ``model.train()`` plus a seed reproduces the release's stochastic test-time output exactly: ``torch.manual_seed
      (s)`` before the forward pass draws the same dropout masks as the release under the same seed (same modules,
      same order; on the same device and dtype). Train mode also updates the running statistics, as the release's
      test script does; they affect no output.
    * torch's literal eval mode of HEAD's network (``track_running_stats=True``: normalise with the running
      statistics) is a network the release never ran; it is not offered.

Deviations from the release:
    * Range: the release feeds ``Normalize(0.5, 0.5)`` of ``ToTensor()``, i.e. ``(x - 0.5) / 0.5`` in [-1, 1], and
      ``tensor2im`` maps back with ``(y + 1) / 2`` (then x255, truncated to uint8). ``restore`` takes [0, 1], applies
      the same two maps and returns ``(clamp(input + G(input), -1, 1) + 1) / 2``: the release's clamp is kept, so the
      output lies in [0, 1] (not unclamped, unlike most models of the harness).
    * Padding: the release pads nothing; the residual addition needs H and W to be multiples of 4 (two stride-2
      levels), else it fails. ``forward`` reflect-pads (``pad_mode = "reflect"``) to ``pad_multiple`` = 4 and crops
      back; GoPro frames (1280x720) are not padded. The README's test command keeps ``resize_or_crop``'s default
      ``resize_and_crop``: ``Resize([640, 360])`` (H 640 x W 360, bicubic) and a random 256x256 crop; the harness
      runs whole frames instead (users report 25.05 dB on 640x360 GoPro frames with the committed checkpoint and
      27.28 with the pre-#134 code and the authors' weights, issue #156; 25.20 in #106).
    * Width (``channels``), ``n_blocks``, ``use_dropout``, ``learn_residual`` and ``block_convs`` are constructor
      arguments, for ``deblurgan_tiny`` and the authors' two-convolution layout; ``padding_type`` 'zero' and
      'replicate' (not used by any release configuration) and the U-Net generators are not ported.
    * Loss: ``loss`` is the generator's content term (below); with ``adversarial=True`` (the default, the release's
      training) ``adversary()`` gives the trainer the release's WGAN-GP critic (``models.adversarial.WGANGP``: 5
      critic updates per generator step, the generator's term ``-D(fake)`` with weight 1). ``critic_width`` is the
      critic's ``ndf`` (64; 8 for ``deblurgan_tiny``).

Training (``models/conditional_gan_model.py``, ``models/losses.py``, ``train.py``): ``loss_G = loss_G_GAN + 100 *
content`` (``lambda_A``). Content: ``--model content_gan`` (the default) is ``PerceptualLoss(MSELoss)``: the MSE of
VGG-19 ``features[:15]`` (up to conv3_3, before its ReLU) of the restoration and of the sharp image (detached), both
fed in [-1, 1] without ImageNet normalisation; ``--model pix2pix`` is the L1 distance of the [-1, 1] images. Here
``content_loss="l1"`` (the default: it needs nothing downloaded) or ``"perceptual"``, which needs torchvision's
ImageNet VGG-19 weights ``vgg19-dcbb9e9d.pth`` placed by hand in ``$TORCH_HOME/hub/checkpoints/`` (nothing is
downloaded). Adversarial, not implemented: the critic is ``NLayerDiscriminator`` (PatchGAN, 70x70 receptive field:
4x4 convolutions 3->64 stride 2, LeakyReLU 0.2; 64->128, 128->256 stride 2 and 256->512 stride 1, each with
InstanceNorm and LeakyReLU; 512->1 stride 1) on the restored or sharp image alone (not on the blurry/sharp pair).
With ``gan_type='wgan-gp'`` (the options' default and the paper's) the critic loss is ``D(fake).mean() -
D(real).mean() + 10 * mean((||grad D(interp)||_2 - 1)^2)`` (the gradient norm over dim 1, the channel axis; one
interpolation factor per batch), five critic updates per generator update, and ``loss_G_GAN = -D(fake).mean()``;
HEAD's ``train.py`` however overrides ``gan_type = "gan"`` (a vanilla GAN: BCE on a sigmoid critic, one update).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.adversarial import WGANGP
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import vgg19_features

CONTENT_WEIGHT = 100.0
"""``lambda_A`` (``options/train_options.py``): the weight of the content term in the generator loss."""

CONTENT_LOSSES = ("l1", "perceptual")
"""``content_loss`` choices: the release's ``--model pix2pix`` (L1) and ``--model content_gan`` (VGG-19 conv3_3 MSE)."""


VGG_CONV3_3 = 14
"""Index of conv3_3 in ``torchvision.models.vgg19().features`` (``PerceptualLoss.contentFunc``'s ``conv_3_3_layer``)."""


class InstanceNorm(nn.Module):
    """The release's ``InstanceNorm2d(affine=False, track_running_stats=True)``, normalising with instance statistics
    in train and eval mode alike (as the release at test time, and PyTorch 0.3's InstanceNorm, do).

    Buffers ``running_mean``, ``running_var`` (updated in train mode as the release's, never read) and, with
    ``count_batches``, ``num_batches_tracked`` (always 0, as PyTorch's InstanceNorm leaves it): the keys of the
    release's checkpoints (module docstring).
    """

    def __init__(self, num_features: int, *, count_batches: bool = True, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        if count_batches:
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return F.instance_norm(
                x, self.running_mean, self.running_var, use_input_stats=True, momentum=self.momentum, eps=self.eps
            )
        return F.instance_norm(x, use_input_stats=True, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` at constant width, reflection-padded 3x3 convolutions (the release's ``ResnetBlock``).

    ``block_convs=1`` (HEAD): ``pad, conv, norm, ReLU, Dropout(0.5)`` with dropout, ``pad, conv, norm`` without.
    ``block_convs=2`` (a6f4ad0): ``pad, conv, norm, ReLU, [Dropout(0.5)], pad, conv, norm``.
    """

    def __init__(self, dim: int, *, use_dropout: bool, block_convs: int, count_batches: bool) -> None:
        super().__init__()

        def pad_conv() -> list[nn.Module]:
            return [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, bias=True)]

        def norm() -> InstanceNorm:
            return InstanceNorm(dim, count_batches=count_batches)

        if block_convs == 1:
            layers = [*pad_conv(), norm(), nn.ReLU(True), nn.Dropout(0.5)] if use_dropout else [*pad_conv(), norm()]
        else:
            layers = [*pad_conv(), norm(), nn.ReLU(True), *([nn.Dropout(0.5)] if use_dropout else [])]
            layers += [*pad_conv(), norm()]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class DeblurGAN(DeblurModel):
    """DeblurGAN's generator: (N, 3, H, W) blurry RGB in [0, 1] -> restored, same shape, in [0, 1] (the release clamps).

    ``restore`` needs H and W to be multiples of 4 (``forward`` pads). ``eval()`` is the deterministic network (dropout
    off); ``train()`` plus ``torch.manual_seed`` reproduces the release's stochastic test-time output (module
    docstring).

    Args:
        channels: width c of the first convolution (64 in the release); the deeper levels have 2c and 4c.
        n_blocks: residual blocks at 4c (9: the release's ``resnet_9blocks``).
        use_dropout: ``Dropout(0.5)`` in each block (the release's default, ``no_dropout`` False).
        learn_residual: add the input and clamp to [-1, 1] (the README's ``--learn_residual``).
        block_convs: convolutions per residual block: 1 as HEAD 2499a87 builds it, 2 as the authors' code (a6f4ad0)
            and their "WILD" weights have it. It also picks the norm buffers of that release's checkpoints
            (``num_batches_tracked`` for 1 only).
        content_loss: ``"l1"`` (the release's pix2pix content loss) or ``"perceptual"`` (VGG-19 conv3_3 MSE; needs
            ``vgg19-dcbb9e9d.pth`` in ``$TORCH_HOME/hub/checkpoints``).
    """

    pad_multiple = 4
    pad_mode = "reflect"

    def __init__(
        self,
        *,
        channels: int = 64,
        n_blocks: int = 9,
        use_dropout: bool = True,
        learn_residual: bool = True,
        block_convs: int = 1,
        content_loss: str = "l1",
        adversarial: bool = True,
        critic_width: int = 64,
    ) -> None:
        super().__init__()
        if channels < 1 or n_blocks < 0:
            raise ValueError(f"DeblurGAN: need channels >= 1 and n_blocks >= 0, got {channels} and {n_blocks}")
        if block_convs not in (1, 2):
            raise ValueError(f"DeblurGAN: block_convs must be 1 (HEAD 2499a87) or 2 (a6f4ad0), got {block_convs}")
        if content_loss not in CONTENT_LOSSES:
            raise ValueError(
                f"DeblurGAN: content_loss must be one of {', '.join(CONTENT_LOSSES)}, got {content_loss!r}"
            )
        self.learn_residual = learn_residual
        self.content_loss = content_loss
        self.adversarial, self.critic_width = adversarial, critic_width
        count = block_convs == 1
        c = channels

        def norm(width: int) -> InstanceNorm:
            return InstanceNorm(width, count_batches=count)

        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, c, kernel_size=7), norm(c), nn.ReLU(True)]
        for width in (c, 2 * c):
            layers += [nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1), norm(2 * width), nn.ReLU(True)]
        layers += [
            ResnetBlock(4 * c, use_dropout=use_dropout, block_convs=block_convs, count_batches=count)
            for _ in range(n_blocks)
        ]
        for width in (4 * c, 2 * c):
            layers += [
                nn.ConvTranspose2d(width, width // 2, kernel_size=3, stride=2, padding=1, output_padding=1),
                norm(width // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, 3, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self._vgg: list[nn.Module] = []  # the perceptual loss network, built on first use; a list keeps it out of
        # state_dict() and parameters()

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) in [0, 1] -> ``(clamp(x + G(x), -1, 1) + 1) / 2`` with ``x = (lq - 0.5) / 0.5``."""
        x = (lq - 0.5) / 0.5  # transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        out = self.model(x)
        if self.learn_residual:
            out = torch.clamp(x + out, min=-1, max=1)
        return (out + 1) / 2.0  # util.tensor2im, before its * 255

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """(N, 3, H, W) crops, H and W multiples of 4 -> the restoration (``gt`` is unused)."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The generator's content term, ``100 * content`` (``lambda_A``), on the [-1, 1] images as the release.

        ``content_loss="l1"``: ``L1(fake, real)`` (``--model pix2pix``); ``"perceptual"``: ``MSE(VGG(fake),
        VGG(real).detach())`` with VGG-19 up to conv3_3 (``--model content_gan``). The adversarial term
        ``loss_G_GAN`` is added by the trainer (``adversary``).

        Returns:
            ``{"content_l1" or "content_perceptual", "total"}``, scalars; ``total`` is 100 x the content term.
        """
        fake, real = (out.restored - 0.5) / 0.5, (gt - 0.5) / 0.5
        if self.content_loss == "l1":
            content = F.l1_loss(fake, real)
        else:
            vgg = self._perceptual_net(fake)
            content = F.mse_loss(vgg(fake), vgg(real).detach())
        return {f"content_{self.content_loss}": content, "total": CONTENT_WEIGHT * content}

    def adversary(self) -> WGANGP | None:
        """The release's critic (``gan_type: wgan-gp``, ``NLayerDiscriminator`` of ``critic_width`` (64) and 3
        layers, 5 updates per step, gradient penalty 10; the generator's term with weight 1 beside ``100 * content``:
        ``models.adversarial.WGANGP``), or ``None`` with ``adversarial=False`` (content loss alone)."""
        return WGANGP(ndf=self.critic_width) if self.adversarial else None

    def _perceptual_net(self, like: Tensor) -> nn.Module:
        """VGG-19 ``features[:15]`` with ImageNet weights, frozen, on ``like``'s device and dtype."""
        if not self._vgg:
            self._vgg.append(vgg19_conv3_3())
        vgg = self._vgg[0].to(device=like.device, dtype=like.dtype)
        self._vgg[0] = vgg
        return vgg


def vgg19_conv3_3(path: Path | None = None) -> nn.Module:
    """torchvision's VGG-19 ``features`` up to conv3_3 (indices 0-14), frozen (``models.losses.vgg19_features``)."""
    return vgg19_features(VGG_CONV3_3, path, needed_by="DeblurGAN's perceptual loss", instead="content_loss='l1'")


@register_model
def deblurgan(**overrides: Any) -> DeblurGAN:
    """DeblurGAN's generator as HEAD 2499a87's test script builds it (one conv per block), 6,067,459 parameters."""
    return DeblurGAN(**{"channels": 64, "n_blocks": 9, "block_convs": 1, **overrides})


@register_model
def deblurgan_wild(**overrides: Any) -> DeblurGAN:
    """The authors' own generator (a6f4ad0, two convs per block, before PR #134), which their "WILD" weights fit:
    11,378,179 parameters."""
    return DeblurGAN(**{"channels": 64, "n_blocks": 9, "block_convs": 2, **overrides})


@register_model
def deblurgan_tiny(**overrides: Any) -> DeblurGAN:
    """DeblurGAN at CPU size for smoke runs and tests: width 8, two blocks, 32,451 parameters; not a published model."""
    return DeblurGAN(**{"channels": 8, "n_blocks": 2, "block_convs": 1, "critic_width": 8, **overrides})
