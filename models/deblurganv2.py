"""DeblurGAN-v2: the FPN generators (Inception-ResNet-v2 and MobileNet-v2 backbones).

Paper: O. Kupyn, T. Martyniuk, J. Wu and Z. Wang, "DeblurGAN-v2: Deblurring (Orders-of-Magnitude) Faster and
Better", ICCV 2019 (arXiv:1908.03826).
Upstream: https://github.com/VITA-Group/DeblurGANv2 at HEAD c16bd9f. Generators ``models/fpn_inception.py``
(``FPNInception``, ``FPN``, ``FPNHead``), ``models/fpn_mobilenet.py`` (``FPNMobileNet``) and ``models/mobilenet_v2.py``
(``MobileNetV2``), built by ``models/networks.py`` ``get_generator`` with ``norm_layer: instance`` (``get_norm_layer``:
``InstanceNorm2d(affine=False, track_running_stats=True)``); input/output ``predict.py``; loss ``models/losses.py``,
``train.py``, ``config/config.yaml``. The Inception backbone is ``pretrainedmodels.inceptionresnetv2``
(Cadene/pretrained-models.pytorch@8aae3d8 ``pretrainedmodels/models/inceptionresnetv2.py``), re-implemented here
with its module names and shapes (``InceptionResNetV2``); the release's constructor downloads its ImageNet weights,
this one never downloads anything. This file is a re-implementation, not a copy.

Architecture: a backbone's feature maps at strides 2, 4, 8, 16 and 32 (``enc0`` ... ``enc4``) enter 1x1 lateral
convolutions (``lateral0`` to half width, the others to ``num_filters_fpn``); a top-down path adds each level to the
nearest-upsampled coarser one and applies conv3x3-InstanceNorm-ReLU (``td1``-``td3``). Four heads (two bias-free
conv3x3-ReLU, ``head1``-``head4``) bring levels 1-4 to ``num_filters``; they are upsampled to stride 4 and
concatenated, ``smooth`` (conv3x3-IN-ReLU) reduces them, the result is upsampled x2, added to ``lateral0``,
``smooth2`` (conv3x3-IN-ReLU to half width), upsampled x2, and ``final`` (conv3x3 to RGB) gives
``clamp(tanh(final) + x, -1, 1)`` on the input ``x`` in [-1, 1]. The Inception backbone convolves without padding,
so its maps are 1-3 pixels short of the strides' sizes: the release reflection-pads the laterals back (``pad``,
``F.pad(..., (1, 2, 1, 2), "reflect")``), which fits inputs whose sides are multiples of 32 and at least 128.

Parameters and state-dict keys: as in the release, the whole backbone is registered (``fpn.inception`` =
InceptionResNetV2 with its 1000-class classifier; ``fpn.features`` = MobileNetV2's ``features``, no classifier) and
``enc0``-``enc4`` register again the modules the FPN uses, so the state dict holds each of those under two names
(``fpn.inception.conv2d_1a.conv.weight`` and ``fpn.enc0.conv.weight``): 2,384 entries for FPN-Inception, 622 for
FPN-MobileNet; ``load_state_dict(strict=True)`` of the released ``{'model': sd}`` files (keys ``module.`` +
these, ``nn.DataParallel``) works after ``models.checkpoint`` strips the wrapper and prefix. ``parameters()`` counts
each once: FPN-Inception 60,929,291 (of which repeat_2, block8, conv2d_7b and last_linear, 25,089,192, are
registered but never used in the forward: 35,840,099 used), FPN-MobileNet 3,312,707 (``features.16``-``18``
unused, 1,206,080 of them). The unused modules have ``requires_grad`` off (they would get no gradient).

Normalisation and train/eval mode: the FPN's norm layers are ``nn.InstanceNorm2d(affine=False,
track_running_stats=True)`` and the backbones' are ``nn.BatchNorm2d`` (eps 1e-3 in Inception, 1e-5 in MobileNet), so
both modes are torch's, exactly as the release's network:
    * train mode (``predict.py`` calls ``model.train(True)`` on purpose, "GAN inference should be in train mode to
      use actual stats in norm layers, it's not a bug"; ``test_metrics.py`` never calls ``eval()`` either):
      InstanceNorm uses each image's statistics, BatchNorm the batch's (the release runs batch 1, so per image and
      channel, like an affine instance norm); both update their running statistics as a side effect. With a batch
      of N > 1 the BatchNorm statistics mix the N images: the release protocol assumes batch 1.
      Train mode with batch 1 needs a stride-32 map larger than 1x1 (BatchNorm refuses one value per channel):
      sides >= 64 for MobileNet (FPN-Inception needs >= 128 anyway).
    * eval mode: both normalise with their running statistics, which the released files hold. A network the release
      never runs at test time; offered because it is torch's eval mode of the same modules.

Deviations from the release:
    * Range: the release feeds ``albu.Normalize(0.5, 0.5)`` of the 8-bit image, ``x / 127.5 - 1`` in [-1, 1];
      ``restore`` takes [0, 1], maps it to ``2 x - 1`` and returns ``(y + 1) / 2`` of the network's output (clamped
      to [-1, 1] by the network itself, so the restoration lies in [0, 1]); ``predict.py`` then multiplies by 255
      and truncates (``astype('uint8')``).
    * Padding: ``predict.py`` zero-pads the bottom and right to ``(h // 32 + 1) * 32``, i.e. always by 1 to 32
      pixels (a 720x1280 GoPro frame becomes 736x1312), and crops back; here ``forward`` zero-pads (``pad_mode =
      "zero"``) to the next multiple of 32 (``pad_multiple``), nothing where a side already is one (736x1280). Like
      the release, it pads the [-1, 1] image: the zeros are mid-grey 0.5 in [0, 1] (``forward`` overrides the base
      class's, which pads the [0, 1] input). FPN-Inception's inputs (and training crops) with a side under 128,
      which the release cannot run, are padded to 128 the same way and cropped back. The
      zeros enter the norm layers' statistics, so the two differ slightly near and away from the border.
      ``test_metrics.py`` (the authors' GoPro scoring) instead pads centred with reflection (``PadIfNeeded(736,
      1280)``, albumentations' default ``BORDER_REFLECT_101``) and centre-crops 720x1280; not reproduced.
    * Backbone weights: the release's constructors load ImageNet weights (Inception from the internet, MobileNet
      from ``mobilenetv2.pth.tar``) and freeze the backbone for the first ``warmup_num: 3`` epochs (``train.py``
      ``unfreeze``). Here the backbone is initialised as the release's code initialises it without those weights
      (torch's default for Inception, ``MobileNetV2._initialize_weights`` for MobileNet) and is trainable from the
      start; released checkpoints overwrite all of it.
    * Widths (``num_filters``, ``num_filters_fpn``) and MobileNet's ``width_mult`` are constructor arguments (for
      ``deblurganv2_tiny``); the release's other generators (``fpn_inception_simple``, ``fpn_dense``,
      ``unet_seresnext``, ``resnet``) and ``norm_layer: batch`` are not ported.
    * Loss: ``loss`` is the generator's content term (below); with ``adversarial=True`` (the default) ``adversary()``
      gives the trainer the released weights' two critics (``models.adversarial.DoubleRaGANLS``, below).

Training (``train.py``, ``models/losses.py``, ``adversarial_trainer.py``, ``config/config.yaml``): ``loss_G =
content + adv_lambda * adv`` with ``adv_lambda = 0.001``. Content (``content_loss: perceptual``, the config's):
``PerceptualLoss``: the images mapped to [0, 1] and ImageNet-normalised (mean 0.485/0.456/0.406, std
0.229/0.224/0.225; the release normalises only batch element 0, in place, which is all of its batch of 1; here every
element), then ``0.006 * MSE(VGG19.features[:15](fake), VGG19.features[:15](real).detach()) + 0.5 * MSE(fake,
real)`` (conv3_3 before its ReLU; the MSE on the normalised images). ``content_loss: l1`` is ``L1(fake, real)`` on
[-1, 1] images. Here ``content_loss="perceptual"`` (needs torchvision's ImageNet VGG-19 weights
``vgg19-dcbb9e9d.pth`` in ``$TORCH_HOME/hub/checkpoints``, placed by hand; see ``models.deblurgan.vgg19_conv3_3``) or
``"l1"`` (the default: nothing to download). Adversarial (``adversary()``, ``models.adversarial.DoubleRaGANLS``;
``adversarial=False`` trains on the content term alone): ``d_name: double_gan`` is two critics
with the config's ``norm_layer`` (instance): a PatchGAN ``NLayerDiscriminator(n_layers=3)`` (4x4 convolutions 3->64
stride 2 + LeakyReLU 0.2; 64->128, 128->256 stride 2 and 256->512 stride 1 with norm + LeakyReLU; 512->1) and a
"full" one ``NLayerDiscriminator(n_layers=5)`` (up to 512 channels, stride 2 five times), on restored or sharp images
alone; each critic's loss is averaged over the two (``DoubleGAN``). The released weights were trained with
``disc_loss: ragan-ls`` (README table; ``RelativisticDiscLossLS``): critic ``(mean((D(real) - mean(D(fake)_pool) -
1)^2) + mean((D(fake) - mean(D(real)_pool) + 1)^2)) / 2``, generator the same with the targets swapped, the means
over pools of the last 50 critic outputs (``ImagePool(50)``); the config at HEAD says ``wgan-gp`` (critic
``D(fake) - D(real) + 10 * GP``, generator ``-D(fake)``). One critic update per generator update, both Adam with the
same lr and linear decay.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.adversarial import DoubleRaGANLS
from models.base import DeblurModel, LossTerms, TrainOutput, pad_to_multiple

BACKBONES = ("inception", "mobilenet")
"""``backbone`` choices: ``FPNInception`` (Inception-ResNet-v2) and ``FPNMobileNet`` (MobileNet-v2)."""

CONTENT_LOSSES = ("l1", "perceptual")
"""``content_loss`` choices: the release's ``content_loss: l1`` and ``content_loss: perceptual`` (its config's)."""

PERCEPTUAL_WEIGHT = 0.006
"""``PerceptualLoss.get_loss``: the weight of the VGG-19 conv3_3 feature MSE."""

PIXEL_WEIGHT = 0.5
"""``PerceptualLoss.get_loss``: the weight of the MSE of the ImageNet-normalised images."""

ADV_LAMBDA = 0.001
"""``config/config.yaml`` ``adv_lambda``: the adversarial term's weight in the generator's loss, and the factor of the
critics' loss in their update (``train.py`` ``_update_d``)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MIN_INCEPTION_SIZE = 128
"""The smallest side FPN-Inception runs on: its stride-32 map (side / 32 - 2) must survive a reflection pad of 1."""


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    """The release's ``get_norm_layer('instance')``."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=True)


# --- Inception-ResNet-v2 (pretrainedmodels' module names and shapes) ------------------------------------------------


class BasicConv2d(nn.Module):
    """Bias-free convolution, BatchNorm (eps 1e-3, as TensorFlow's), ReLU: ``conv``, ``bn``, ``relu``."""

    def __init__(self, cin: int, cout: int, kernel_size: int | tuple[int, int], stride: int, padding: Any = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1, affine=True)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _chain(*layers: tuple) -> nn.Sequential:
    """``nn.Sequential`` of ``BasicConv2d(*args)`` for each tuple of arguments."""
    return nn.Sequential(*(BasicConv2d(*args) for args in layers))


class Mixed_5b(nn.Module):
    """192 -> 320 channels at constant size: four branches (1x1; 1x1-5x5; 1x1-3x3-3x3; avg pool-1x1) concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, 1, 1)
        self.branch1 = _chain((192, 48, 1, 1), (48, 64, 5, 1, 2))
        self.branch2 = _chain((192, 64, 1, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1))
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), BasicConv2d(192, 64, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class _ResidualInception(nn.Module):
    """Shared forward of Block35/17/8: ``relu(x + scale * conv2d(cat(branches)))`` (no ReLU with ``no_relu``)."""

    scale: float
    no_relu: bool = False
    conv2d: nn.Conv2d

    def branches(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name.startswith("branch")]

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2d(torch.cat([b(x) for b in self.branches()], 1)) * self.scale + x
        return out if self.no_relu else self.relu(out)


class Block35(_ResidualInception):
    """Inception-ResNet-A at 320 channels (``repeat``, scale 0.17)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(320, 32, 1, 1)
        self.branch1 = _chain((320, 32, 1, 1), (32, 32, 3, 1, 1))
        self.branch2 = _chain((320, 32, 1, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1))
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1, stride=1)
        self.relu = nn.ReLU(inplace=False)


class Mixed_6a(nn.Module):
    """320 -> 1088 channels, stride 2 without padding: 3x3/2; 1x1-3x3-3x3/2; max pool 3/2."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(320, 384, 3, 2)
        self.branch1 = _chain((320, 256, 1, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Block17(_ResidualInception):
    """Inception-ResNet-B at 1088 channels (``repeat_1``, scale 0.10): 1x1; 1x1-1x7-7x1."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(1088, 192, 1, 1)
        self.branch1 = _chain((1088, 128, 1, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1, stride=1)
        self.relu = nn.ReLU(inplace=False)


class Mixed_7a(nn.Module):
    """1088 -> 2080 channels, stride 2 without padding: three conv branches and a max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _chain((1088, 256, 1, 1), (256, 384, 3, 2))
        self.branch1 = _chain((1088, 256, 1, 1), (256, 288, 3, 2))
        self.branch2 = _chain((1088, 256, 1, 1), (256, 288, 3, 1, 1), (288, 320, 3, 2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block8(_ResidualInception):
    """Inception-ResNet-C at 2080 channels (``repeat_2``, scale 0.20; ``block8`` without ReLU): 1x1; 1x1-1x3-3x1."""

    def __init__(self, scale: float = 1.0, no_relu: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.no_relu = no_relu
        self.branch0 = BasicConv2d(2080, 192, 1, 1)
        self.branch1 = _chain((2080, 192, 1, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1, stride=1)
        if not no_relu:
            self.relu = nn.ReLU(inplace=False)


class InceptionResNetV2(nn.Module):
    """``pretrainedmodels.inceptionresnetv2(num_classes=1000)``'s modules, in its order (55,843,464 parameters).

    Only the stem through ``mixed_7a`` is used by the FPN; ``repeat_2``, ``block8``, ``conv2d_7b``, ``avgpool_1a``
    and ``last_linear`` are registered so that the release's state dict loads, and have no forward here.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, 2)
        self.conv2d_2a = BasicConv2d(32, 32, 3, 1)
        self.conv2d_2b = BasicConv2d(32, 64, 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3, 1)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed_5b()
        self.repeat = nn.Sequential(*(Block35(scale=0.17) for _ in range(10)))
        self.mixed_6a = Mixed_6a()
        self.repeat_1 = nn.Sequential(*(Block17(scale=0.10) for _ in range(20)))
        self.mixed_7a = Mixed_7a()
        self.repeat_2 = nn.Sequential(*(Block8(scale=0.20) for _ in range(9)))
        self.block8 = Block8(no_relu=True)
        self.conv2d_7b = BasicConv2d(2080, 1536, 1, 1)
        self.avgpool_1a = nn.AvgPool2d(8, count_include_pad=False)
        self.last_linear = nn.Linear(1536, num_classes)


# --- MobileNet-v2 (the release's models/mobilenet_v2.py) --------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNet-v2 block ``conv``: [1x1 expand-BN-ReLU6,] 3x3 depthwise-BN-ReLU6, 1x1 project-BN (+ input)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(cin, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""MobileNet-v2's (expansion t, channels c, repeats n, first stride s) per stage."""


def mobilenet_v2_features(width_mult: float = 1.0) -> nn.Sequential:
    """``MobileNetV2(n_class=1000, width_mult=...).features`` (19 modules), initialised as its
    ``_initialize_weights`` does (convolutions N(0, 2 / (k^2 * out)), no biases; BatchNorm 1 and 0)."""
    cin = int(32 * width_mult)
    last = int(1280 * width_mult) if width_mult > 1.0 else 1280
    layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
    for t, c, n, s in MOBILENET_SETTING:
        cout = int(c * width_mult)
        for i in range(n):
            layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, expand_ratio=t))
            cin = cout
    layers.append(_conv_bn(cin, last, 1, 1))
    features = nn.Sequential(*layers)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return features


# --- the FPNs and the generator ------------------------------------------------------------------------------------


def _td(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), _instance_norm(channels), nn.ReLU(inplace=True))


def _up(x: Tensor, factor: int) -> Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


class InceptionFPN(nn.Module):
    """The release's ``fpn_inception.FPN``: (N, 3, H, W), H, W multiples of 32 and >= 128 -> five maps at strides
    2 (``num_filters / 2`` channels) and 4, 8, 16, 32 (``num_filters``)."""

    def __init__(self, num_filters: int = 256) -> None:
        super().__init__()
        self.inception = InceptionResNetV2(num_classes=1000)
        inc = self.inception
        self.enc0 = inc.conv2d_1a
        self.enc1 = nn.Sequential(inc.conv2d_2a, inc.conv2d_2b, inc.maxpool_3a)
        self.enc2 = nn.Sequential(inc.conv2d_3b, inc.conv2d_4a, inc.maxpool_5a)
        self.enc3 = nn.Sequential(inc.mixed_5b, inc.repeat, inc.mixed_6a)
        self.enc4 = nn.Sequential(inc.repeat_1, inc.mixed_7a)
        for unused in (inc.repeat_2, inc.block8, inc.conv2d_7b, inc.last_linear):  # registered, never run
            unused.requires_grad_(False)
        self.td1 = _td(num_filters)
        self.td2 = _td(num_filters)
        self.td3 = _td(num_filters)
        self.pad = nn.ReflectionPad2d(1)
        self.lateral4 = nn.Conv2d(2080, num_filters, kernel_size=1, bias=False)
        self.lateral3 = nn.Conv2d(1088, num_filters, kernel_size=1, bias=False)
        self.lateral2 = nn.Conv2d(192, num_filters, kernel_size=1, bias=False)
        self.lateral1 = nn.Conv2d(64, num_filters, kernel_size=1, bias=False)
        self.lateral0 = nn.Conv2d(32, num_filters // 2, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        h, w = x.shape[-2:]
        if h % 32 or w % 32 or min(h, w) < MIN_INCEPTION_SIZE:
            raise ValueError(
                f"FPN-Inception needs sides that are multiples of 32 and >= {MIN_INCEPTION_SIZE}, got {h}x{w}"
            )
        enc0 = self.enc0(x)  # H/2 - 1
        enc1 = self.enc1(enc0)  # H/4 - 2
        enc2 = self.enc2(enc1)  # H/8 - 3
        enc3 = self.enc3(enc2)  # H/16 - 2
        enc4 = self.enc4(enc3)  # H/32 - 2
        map4 = self.pad(self.lateral4(enc4))
        map3 = self.td1(self.pad(self.lateral3(enc3)) + _up(map4, 2))
        map2 = self.td2(F.pad(self.lateral2(enc2), (1, 2, 1, 2), "reflect") + _up(map3, 2))
        map1 = self.td3(self.pad(self.lateral1(enc1)) + _up(map2, 2))
        return F.pad(self.lateral0(enc0), (0, 1, 0, 1), "reflect"), map1, map2, map3, map4


class MobileNetFPN(nn.Module):
    """The release's ``fpn_mobilenet.FPN``: (N, 3, H, W), H, W multiples of 32 -> five maps as ``InceptionFPN``'s.

    ``width_mult`` scales MobileNet-v2's channels (1.0 in the release; ``deblurganv2_tiny`` uses less)."""

    def __init__(self, num_filters: int = 128, width_mult: float = 1.0) -> None:
        super().__init__()
        self.features = mobilenet_v2_features(width_mult)
        f = self.features
        self.enc0 = nn.Sequential(*f[0:2])
        self.enc1 = nn.Sequential(*f[2:4])
        self.enc2 = nn.Sequential(*f[4:7])
        self.enc3 = nn.Sequential(*f[7:11])
        self.enc4 = nn.Sequential(*f[11:16])
        f[16:].requires_grad_(False)  # registered, never run
        self.td1 = _td(num_filters)
        self.td2 = _td(num_filters)
        self.td3 = _td(num_filters)
        ch = [int(c * width_mult) for c in (16, 24, 32, 64, 160)]
        self.lateral4 = nn.Conv2d(ch[4], num_filters, kernel_size=1, bias=False)
        self.lateral3 = nn.Conv2d(ch[3], num_filters, kernel_size=1, bias=False)
        self.lateral2 = nn.Conv2d(ch[2], num_filters, kernel_size=1, bias=False)
        self.lateral1 = nn.Conv2d(ch[1], num_filters, kernel_size=1, bias=False)
        self.lateral0 = nn.Conv2d(ch[0], num_filters // 2, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        enc0 = self.enc0(x)
        enc1 = self.enc1(enc0)
        enc2 = self.enc2(enc1)
        enc3 = self.enc3(enc2)
        enc4 = self.enc4(enc3)
        map4 = self.lateral4(enc4)
        map3 = self.td1(self.lateral3(enc3) + _up(map4, 2))
        map2 = self.td2(self.lateral2(enc2) + _up(map3, 2))
        map1 = self.td3(self.lateral1(enc1) + _up(map2, 2))
        return self.lateral0(enc0), map1, map2, map3, map4


class FPNHead(nn.Module):
    """Two bias-free conv3x3-ReLU: ``block0``, ``block1``."""

    def __init__(self, cin: int, cmid: int, cout: int) -> None:
        super().__init__()
        self.block0 = nn.Conv2d(cin, cmid, kernel_size=3, padding=1, bias=False)
        self.block1 = nn.Conv2d(cmid, cout, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.block1(F.relu(self.block0(x))))


class DeblurGANv2(DeblurModel):
    """DeblurGAN-v2's generator: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W) in [0, 1].

    ``restore`` needs H and W to be multiples of 32; ``forward`` zero-pads in [-1, 1] space (module docstring).
    Submodules ``fpn``, ``head1``-``head4``, ``smooth``, ``smooth2``, ``final``: the release's ``FPNInception`` /
    ``FPNMobileNet`` keys.

    Args:
        backbone: ``"inception"`` (FPN-Inception, ``fpn_inception.h5``) or ``"mobilenet"`` (``fpn_mobilenet.h5``).
        num_filters: the heads' width (128 for Inception, 64 for MobileNet in the release).
        num_filters_fpn: the FPN's width (256 / 128).
        width_mult: MobileNet-v2's channel multiplier (1.0 in the release; MobileNet only).
        content_loss: ``"l1"`` or ``"perceptual"`` (the release's config; needs the VGG-19 weights), see module doc.
    """

    pad_multiple = 32
    pad_mode = "zero"

    def __init__(
        self,
        *,
        backbone: str = "inception",
        num_filters: int = 128,
        num_filters_fpn: int = 256,
        width_mult: float = 1.0,
        content_loss: str = "l1",
        adversarial: bool = True,
        critic_width: int = 64,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"DeblurGANv2: backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if content_loss not in CONTENT_LOSSES:
            raise ValueError(
                f"DeblurGANv2: content_loss must be one of {', '.join(CONTENT_LOSSES)}, got {content_loss!r}"
            )
        if num_filters < 2 or num_filters % 2 or num_filters_fpn < 2 or num_filters_fpn % 2:
            raise ValueError(
                f"DeblurGANv2: num_filters and num_filters_fpn must be even and >= 2, "
                f"got {num_filters}, {num_filters_fpn}"
            )
        if backbone == "inception" and width_mult != 1.0:
            raise ValueError(f"DeblurGANv2: width_mult applies to the MobileNet backbone only, got {width_mult}")
        if not 0.0 < width_mult <= 1.0 or int(16 * width_mult) < 1:
            raise ValueError(f"DeblurGANv2: width_mult must be in (1/16, 1], got {width_mult}")
        self.backbone = backbone
        self.content_loss = content_loss
        self.adversarial, self.critic_width = adversarial, critic_width
        fpn_width, width = num_filters_fpn, num_filters
        self.fpn: nn.Module = (
            InceptionFPN(fpn_width) if backbone == "inception" else MobileNetFPN(fpn_width, width_mult)
        )
        self.head1 = FPNHead(fpn_width, width, width)
        self.head2 = FPNHead(fpn_width, width, width)
        self.head3 = FPNHead(fpn_width, width, width)
        self.head4 = FPNHead(fpn_width, width, width)
        self.smooth = nn.Sequential(nn.Conv2d(4 * width, width, 3, padding=1), _instance_norm(width), nn.ReLU())
        self.smooth2 = nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), _instance_norm(width // 2), nn.ReLU())
        self.final = nn.Conv2d(width // 2, 3, kernel_size=3, padding=1)
        self._vgg: list[nn.Module] = []  # the perceptual loss network, built on first use; kept out of state_dict

    def generator(self, x: Tensor) -> Tensor:
        """The release's ``FPNInception.forward`` / ``FPNMobileNet.forward`` on ``x`` in [-1, 1]; output in [-1, 1]."""
        map0, map1, map2, map3, map4 = self.fpn(x)
        map4 = _up(self.head4(map4), 8)
        map3 = _up(self.head3(map3), 4)
        map2 = _up(self.head2(map2), 2)
        map1 = self.head1(map1)
        smoothed = _up(self.smooth(torch.cat([map4, map3, map2, map1], dim=1)), 2)
        smoothed = _up(self.smooth2(smoothed + map0), 2)
        return torch.clamp(torch.tanh(self.final(smoothed)) + x, min=-1, max=1)

    def forward(self, lq: Tensor, *, pad_mode: str | None = None) -> Tensor:
        """(N, 3, H, W) in [0, 1], any H, W -> restored, in [0, 1]. Padded (``pad_mode``, default ``"zero"``) to a
        multiple of 32 in the release's [-1, 1] space, as ``predict.py`` pads the normalised image: zero there is
        mid-grey (0.5) here; cropped back."""
        if lq.dim() != 4 or lq.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) RGB batch, got shape {tuple(lq.shape)}")
        mode = pad_mode or self.pad_mode
        padded, (h, w) = pad_to_multiple(lq * 2 - 1, self.pad_multiple, mode)
        return (self._generate(padded, mode)[..., :h, :w] + 1) / 2

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) in [0, 1] -> ``(G(2 lq - 1) + 1) / 2``, in [0, 1] (the release's clamp)."""
        return (self._generate(lq * 2 - 1, "zero") + 1) / 2

    def _generate(self, x: Tensor, mode: str) -> Tensor:
        """``generator(x)``; FPN-Inception inputs with a side under 128 are first padded to 128 (``mode``; replicate
        where a reflection would not fit) and cropped back, so that any size runs (the release fails on them)."""
        h, w = x.shape[-2:]
        if self.backbone != "inception" or min(h, w) >= MIN_INCEPTION_SIZE:
            return self.generator(x)
        ph, pw = max(MIN_INCEPTION_SIZE - h, 0), max(MIN_INCEPTION_SIZE - w, 0)
        if mode == "zero":
            x = F.pad(x, (0, pw, 0, ph))
        else:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        return self.generator(x)[..., :h, :w]

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """(N, 3, H, W) crops, H and W multiples of 32 -> the restoration (``gt`` is unused)."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's content loss (module docstring; the trainer adds ``adv_lambda`` x the adversarial term).

        ``"l1"``: ``L1`` of the [-1, 1] images (``ContentLoss(nn.L1Loss())``), ``2 * L1`` of the [0, 1] ones.
        ``"perceptual"``: ``0.006 * MSE(VGG(n(fake)), VGG(n(real)).detach()) + 0.5 * MSE(n(fake), n(real))`` with
        ``n`` the ImageNet normalisation of the [0, 1] images and VGG = VGG-19 up to conv3_3.
        """
        if self.content_loss == "l1":
            l1 = F.l1_loss(out.restored * 2 - 1, gt * 2 - 1)
            return {"l1": l1, "total": l1}
        fake, real = imagenet_normalize(out.restored), imagenet_normalize(gt)
        vgg = self._perceptual_net(fake)
        perceptual = F.mse_loss(vgg(fake), vgg(real).detach())
        pixel = F.mse_loss(fake, real)
        return {
            "perceptual": perceptual,
            "pixel": pixel,
            "total": PERCEPTUAL_WEIGHT * perceptual + PIXEL_WEIGHT * pixel,
        }

    def adversary(self) -> DoubleRaGANLS | None:
        """The released weights' discriminators (``d_name: double_gan``, ``disc_loss: ragan-ls``, ``adv_lambda:
        0.001``: ``models.adversarial.DoubleRaGANLS``, critics of ``critic_width`` (64)), or ``None`` with
        ``adversarial=False`` (content loss alone)."""
        return DoubleRaGANLS(ndf=self.critic_width, adv_lambda=ADV_LAMBDA) if self.adversarial else None

    def _perceptual_net(self, like: Tensor) -> nn.Module:
        """VGG-19 ``features[:15]`` with ImageNet weights (``models.deblurgan.vgg19_conv3_3``), on ``like``'s device."""
        if not self._vgg:
            from models.deblurgan import vgg19_conv3_3

            self._vgg.append(vgg19_conv3_3())
        self._vgg[0] = self._vgg[0].to(device=like.device, dtype=like.dtype)
        return self._vgg[0]


def imagenet_normalize(x: Tensor) -> Tensor:
    """``transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)`` of (N, 3, H, W) images in [0, 1]."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@register_model
def deblurganv2(**overrides: Any) -> DeblurGANv2:
    """FPN-Inception (release ``fpn_inception.h5``): 60,929,291 registered parameters, 35,840,099 used."""
    return DeblurGANv2(**{"backbone": "inception", "num_filters": 128, "num_filters_fpn": 256, **overrides})


@register_model
def deblurganv2_mobilenet(**overrides: Any) -> DeblurGANv2:
    """FPN-MobileNet (release ``fpn_mobilenet.h5``): 3,312,707 parameters."""
    return DeblurGANv2(**{"backbone": "mobilenet", "num_filters": 64, "num_filters_fpn": 128, **overrides})


@register_model
def deblurganv2_tiny(**overrides: Any) -> DeblurGANv2:
    """FPN-MobileNet at CPU size for smoke runs and tests: MobileNet-v2 x0.25, FPN width 32, heads 16; 304,619
    parameters; not a published model."""
    kwargs = {"backbone": "mobilenet", "num_filters": 16, "num_filters_fpn": 32, "width_mult": 0.25, "critic_width": 8}
    return DeblurGANv2(**{**kwargs, **overrides})
