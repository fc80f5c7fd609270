"""DeepDeblur (MSCNN): the deep multi-scale convolutional network for dynamic scene deblurring, as MSResNet.

Paper: S. Nah, T. H. Kim and K. M. Lee, "Deep Multi-scale Convolutional Neural Network for Dynamic Scene Deblurring",
CVPR 2017 (arXiv:1612.02177). The paper's code is Torch7 (SeungjunNah/DeepDeblur_release); this is the authors'
PyTorch re-implementation.
Upstream: https://github.com/SeungjunNah/DeepDeblur-PyTorch at HEAD 26047f7 ("DDP bugfix"). The architecture is
``src/model/MSResNet.py`` with its blocks from ``src/model/ResNet.py`` and ``src/model/common.py``
(``default_conv``, ``ResBlock``); the input transform (0-255 range, Gaussian pyramid) is ``src/data/dataset.py``
``__getitem__`` and ``src/data/common.py`` ``generate_pyramid``; the loss ``src/loss/__init__.py``; the defaults
``src/option.py``. The released GoPro weights are ``GOPRO_L1`` (README "Demo", Google Drive
1AfZhyUXEA8_UdZco9EdtpWjTBAb8BbWv), unzipped to ``experiment/GOPRO_L1/models/model-1000.pt``, saved by
``src/model/__init__.py`` ``Model.state_dict`` as ``{'G': state_dict}`` (no ``module.`` prefix: DataParallel is
unwrapped before saving). This file is a re-implementation, not a copy.

Three scales, coarse to fine (``n_scales = 3``). The input is the Gaussian pyramid of the blurry image in 0-255
(``rgb_range`` 255), each level shifted by -127.5 (``rgb_range / 2``). The coarsest level (1/4) goes through its own
``ResNet`` (``body_models[2]``: a 5x5 convolution to 64 channels, 19 ``ResBlock`` of conv5x5-ReLU-conv5x5 with an
identity skip, a 5x5 convolution to RGB; no global skip). Its output is upsampled by ``conv_end_models[2]`` (a 5x5
convolution to 12 channels and ``PixelShuffle(2)``), concatenated with the next finer input level, and fed to
``body_models[1]`` (6 input channels), and likewise up to the full resolution (``body_models[0]``). Every output is
shifted back by +127.5; ``output_pyramid[0]``, the full-resolution one, is the restoration (the release's test loop,
``src/train.py`` line 164, "select last output in a pyramid"). ``deepdeblur`` (64 features, 19 blocks per scale,
kernel 5) has 11,721,321 parameters: 3,903,299 at the coarsest scale, 3,908,099 at each of the two others, 912 per
upsampler; ``deepdeblur_tiny`` (16 features, 3 blocks) has 126,969. ``body_models``/``conv_end_models`` and their
indices are the release's (``conv_end_models[0]`` is ``None`` there too), so the released ``G`` state dict loads
strictly (``models.checkpoint`` unwraps ``G``).

The Gaussian pyramid is scikit-image's ``pyramid_gaussian(img, 2, multichannel=True)`` (data/common.py line 143),
rebuilt here in torch (``gaussian_pyramid``): each coarser level smooths the previous one with a Gaussian of sigma
2/3 (``2 * downscale / 6``), truncated at 4 sigma (7 taps), with ndimage's ``reflect`` boundary (the edge sample
repeated), separably along H then W, and resizes it bilinearly with pixel-centre alignment to ``ceil(size / 2)``;
on the even sizes met here that is the mean of each 2x2 block. It is not F.interpolate's downsampling: a pretrained
checkpoint only fits these exact coarse inputs. Against scikit-image 0.26 in float64 the pyramid agreed to 2e-13 on
0-255 values (``tests/test_deepdeblur.py`` asserts 1e-11).

Released scores: the GOPRO_L1 weights give 30.40 dB / 0.9018 on GoPro (README "Results"), not the paper's 29.08 dB
(Table 1 of the CVPR paper, the Torch7 model): upstream issue #21, where the author attributes it to the changed
training (0-255 range, L1 instead of L2 and no adversarial term, more epochs, batch 16). They are measured on
GoPro's ``blur_gamma`` inputs (``--blur_key`` default, ``src/option.py`` line 46; ``src/data/gopro_large.py`` line
16), the gamma-corrected blur the paper used, not the ``blur`` folder of the later methods: set
``dataset.fetch.blur_folder: blur_gamma`` to score as the authors did. Their scoring (``src/loss/__init__.py``
``measure``, lines 206-237): the output clamped to [0, 255] and ``round_()``-ed (ties to even), PSNR per image on
RGB with peak 255, and the SSIM of ``src/loss/metric.py`` (an 11x11 Gaussian, sigma 1.5, valid filtering,
population covariance, mean over pixels and channels: Wang's, i.e. ``gaussian2d``, in float32).

Deviations from the release:
    * Input range: ``restore`` takes RGB in [0, 1] and multiplies by 255 (``rgb_range``) before the pyramid; the
      output is divided by 255. The release builds the pyramid from the uint8 image cast to float32; an input that
      is ``uint8 / 255`` in float32 is ``uint8`` again after ``* 255`` up to float32 rounding (1e-5 of 255).
    * The pyramid is computed in torch, on the model's device and in its dtype, inside ``restore``; the release makes
      it on the CPU with scikit-image, in the data loader, from a float32 image (the precision of the filtering
      depends on the scikit-image version). The arithmetic is the same; the summation order differs by rounding.
    * Padding: the release's test split is scored unpadded (GoPro's 1280x720 fit) and its demo mode pads the
      bottom/right by edge replication (``np.pad(mode='edge')``, data/common.py ``pad``, to a multiple of
      ``2 ** (n_scales - 1)`` = 4) and crops back. Here ``restore`` needs multiples of ``pad_multiple`` (4) and
      ``forward`` reflect-pads (``pad_mode = "reflect"``; the harness has no edge-replication mode) and crops back.
      On GoPro frames nothing is padded.
    * Outputs are not clamped here (the release clamps only when scoring and saving).
    * Loss: the release's ``1*L1`` is the sum over the three scales of ``nn.L1Loss`` between each output and the same
      Gaussian pyramid of the sharp image, on 0-255 values; here it is computed on [0, 1] values, i.e. 1/255 of the
      release's. Adam's steps are invariant to that scale but for its eps (1e-8), whose relative weight grows 255x
      (small unless a parameter's gradients are tiny). The adversarial variants (``1*L1+k*ADV``,
      ``src/loss/adversarial.py`` and ``src/model/discriminator.py``) are not implemented.
    * Training augmentation (``src/data/dataset.py`` line 127-130, ``common.augment``/``add_noise``): the release
      draws horizontal and vertical flips and a transposition (the harness's ``dihedral``), and also a random RGB
      channel permutation, a saturation scaling in HSV (x U(0.5, 1.5)) and Gaussian noise on the blurry input (sigma
      drawn as N(0, 1) x 2 per image); the last three are not available in the harness (``conf/train/deepdeblur.yaml``).
    * Schedule: the release halves the learning rate after epochs 500, 750 and 900 (MultiStepLR); the harness's
      ``step`` scheduler has one period, so ``conf/train/deepdeblur.yaml`` halves every 500 epochs (the same rate for
      the first 750 of the 1000 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput

RGB_RANGE = 255
"""The release's ``--rgb_range`` (``src/option.py`` line 47): images in 0-255, shifted by ``RGB_RANGE / 2``."""

PYRAMID_SIGMA = 2 * 2 / 6.0
"""scikit-image ``pyramid_reduce``'s default sigma for ``downscale=2``: ``2 * downscale / 6``."""

PYRAMID_TRUNCATE = 4.0
"""scipy.ndimage's default truncation of the Gaussian (radius ``int(4 * sigma + 0.5)`` = 3)."""

UPSAMPLER_KERNEL = 5
"""``conv_end``'s kernel size: its default in ``MSResNet.py``, fixed whatever ``kernel_size`` is."""


def _gaussian_taps(dtype: torch.dtype, device: torch.device) -> Tensor:
    """ndimage's ``_gaussian_kernel1d(sigma, 0, radius)``: exp(-x^2 / (2 sigma^2)) over [-r, r], normalised."""
    radius = int(PYRAMID_TRUNCATE * PYRAMID_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / (PYRAMID_SIGMA * PYRAMID_SIGMA) * x**2)
    return (phi / phi.sum()).to(dtype=dtype, device=device)


def _symmetric_indices(n: int, radius: int, device: torch.device) -> Tensor:
    """Indices of ``radius`` samples beyond each end of a length-``n`` axis under ndimage's ``reflect`` mode
    (``d c b a | a b c d | d c b a``, periodic with period 2n, so any ``n >= 1`` works)."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_smooth(x: Tensor) -> Tensor:
    """scikit-image ``pyramid_reduce``'s smoothing of (N, C, H, W): ``ndi.gaussian_filter`` with sigma 2/3 on H and
    W (0 on channels), mode ``reflect``, truncate 4; applied along H, then W, as ndimage does."""
    taps = _gaussian_taps(x.dtype, x.device)
    r = taps.numel() // 2
    n, c, h, w = x.shape
    rows = x.index_select(2, _symmetric_indices(h, r, x.device))
    x = F.conv2d(rows.reshape(n * c, 1, h + 2 * r, w), taps.view(1, 1, -1, 1)).reshape(n, c, h, w)
    cols = x.index_select(3, _symmetric_indices(w, r, x.device))
    return F.conv2d(cols.reshape(n * c, 1, h, w + 2 * r), taps.view(1, 1, 1, -1)).reshape(n, c, h, w)


def gaussian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """scikit-image's ``pyramid_gaussian(img, levels - 1, multichannel=True)`` of (N, C, H, W), fine to coarse.

    Level 0 is ``x`` itself; each further level is the previous one smoothed (``gaussian_smooth``) and resized to
    half its size (``resize(order=1, anti_aliasing=False)``, pixel-centre aligned: on an even size exactly the mean
    of each 2x2 block). Every level but the last must have even H and W (``DeepDeblur.restore`` ensures it).
    """
    pyramid = [x]
    for _ in range(1, levels):
        prev = pyramid[-1]
        h, w = prev.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"gaussian_pyramid: level {len(pyramid) - 1} is {h}x{w}; halving needs even sizes")
        pyramid.append(F.avg_pool2d(gaussian_smooth(prev), 2))
    return pyramid


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    """The release's ``common.default_conv``: bias, padding ``k // 2`` (size-preserving)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


class ResBlock(nn.Module):
    """``common.ResBlock`` without norm: ``body`` = conv, ReLU, conv (keys ``body.0``, ``body.2``), plus the input."""

    def __init__(self, n_feats: int, kernel_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_feats, n_feats, kernel_size), nn.ReLU(inplace=True), _conv(n_feats, n_feats, kernel_size)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class ResNet(nn.Module):
    """The release's ``ResNet`` with ``mean_shift=False``: ``body`` = conv to ``n_feats``, ``n_resblocks`` ResBlocks,
    conv to ``out_channels`` (keys ``body.0`` ... ``body.<n_resblocks + 1>``); no global skip."""

    def __init__(self, in_channels: int, out_channels: int, *, n_feats: int, kernel_size: int, n_resblocks: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(in_channels, n_feats, kernel_size),
            *(ResBlock(n_feats, kernel_size) for _ in range(n_resblocks)),
            _conv(n_feats, out_channels, kernel_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ConvEnd(nn.Module):
    """The release's ``conv_end(3, 12)``: ``uppath`` = 5x5 conv from 3 to 12 channels, ``PixelShuffle(2)``: an RGB
    output at twice the size."""

    def __init__(self, in_channels: int = 3, out_channels: int = 12, kernel_size: int = UPSAMPLER_KERNEL) -> None:
        super().__init__()
        self.uppath = nn.Sequential(_conv(in_channels, out_channels, kernel_size), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.uppath(x)


@dataclass
class DeepDeblurTrainOutput(TrainOutput):
    """What ``DeepDeblur.forward_train`` returns.

    Attributes:
        restored: the full-resolution restoration (N, 3, H, W), the same tensor as ``pyramid[0]``.
        pyramid: the outputs of all scales, fine to coarse as the release's ``output_pyramid``: (N, 3, H, W),
            (N, 3, H/2, W/2), (N, 3, H/4, W/4) for three scales, in [0, 1] units, unclamped.
    """

    pyramid: tuple[Tensor, ...]


class DeepDeblur(DeblurModel):
    """MSResNet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of ``pad_multiple`` = ``2 ** (n_scales - 1)`` (``forward`` pads).

    Args:
        n_scales: pyramid levels (3 in the release, ``--n_scales``).
        n_resblocks: ResBlocks per scale (19, ``--n_resblocks``).
        n_feats: feature maps (64, ``--n_feats``).
        kernel_size: convolution kernel of the scale networks (5, ``--kernel_size``); the upsamplers keep 5.
    """

    pad_mode = "reflect"

    def __init__(self, *, n_scales: int = 3, n_resblocks: int = 19, n_feats: int = 64, kernel_size: int = 5) -> None:
        super().__init__()
        if n_scales < 1:
            raise ValueError(f"DeepDeblur: n_scales must be >= 1, got {n_scales}")
        if n_resblocks < 0 or n_feats < 1:
            raise ValueError(f"DeepDeblur: need n_resblocks >= 0 and n_feats >= 1, got {n_resblocks}, {n_feats}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DeepDeblur: kernel_size must be odd and positive, got {kernel_size}")
        self.n_scales = n_scales
        self.pad_multiple = 2 ** (n_scales - 1)
        self.mean = RGB_RANGE / 2
        size = {"n_feats": n_feats, "kernel_size": kernel_size, "n_resblocks": n_resblocks}
        # As the release: index 0 is the finest scale; all but the coarsest also read the upsampled coarser output.
        self.body_models = nn.ModuleList([*(ResNet(6, 3, **size) for _ in range(1, n_scales)), ResNet(3, 3, **size)])
        # The release's ModuleList([None]) + one upsampler per coarser scale: conv_end_models[s] lifts scale s to s-1.
        self.conv_end_models = nn.ModuleList([None, *(ConvEnd() for _ in range(1, n_scales))])

    def multiscale(self, pyramid: list[Tensor]) -> list[Tensor]:
        """The release's ``MSResNet.forward``: the 0-255 input pyramid, fine to coarse -> the outputs, likewise."""
        inputs = [level - self.mean for level in pyramid]
        outputs: list[Tensor] = [inputs[0]] * self.n_scales  # placeholders, all overwritten
        input_s = inputs[-1]
        for s in range(self.n_scales - 1, -1, -1):
            outputs[s] = self.body_models[s](input_s)
            if s > 0:
                input_s = torch.cat((inputs[s - 1], self.conv_end_models[s](outputs[s])), 1)
        return [out + self.mean for out in outputs]

    def _pyramid_outputs(self, lq: Tensor) -> list[Tensor]:
        """[0, 1] input -> the outputs of every scale in [0, 1] units, fine to coarse."""
        outputs = self.multiscale(gaussian_pyramid(lq * RGB_RANGE, self.n_scales))
        return [out / RGB_RANGE for out in outputs]

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> the full-resolution output (the release's ``output_pyramid[0]``), / 255."""
        return self._pyramid_outputs(lq)[0]

    def forward_train(self, lq: Tensor, gt: Tensor) -> DeepDeblurTrainOutput:
        """(N, 3, H, W) crops, H and W multiples of ``pad_multiple`` -> all scales (``gt`` is read by ``loss``)."""
        self.check_train_size(lq)
        outputs = self._pyramid_outputs(lq)
        return DeepDeblurTrainOutput(restored=outputs[0], pyramid=tuple(outputs))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's ``--loss 1*L1``: the sum over the scales of the L1 distance to the Gaussian pyramid of ``gt``.

        The target pyramid is built as the input's (``data/common.py`` ``generate_pyramid`` on both images); the
        release computes it on 0-255 values (255x this value, see the module docstring).

        Args:
            out: a ``DeepDeblurTrainOutput`` from ``forward_train``.
            gt: sharp (N, 3, H, W) in [0, 1].

        Returns:
            ``{"l1", "total"}``, scalars.
        """
        if not isinstance(out, DeepDeblurTrainOutput):
            raise TypeError(f"DeepDeblur.loss needs a DeepDeblurTrainOutput, got {type(out).__name__}")
        targets = gaussian_pyramid(gt, len(out.pyramid))
        l1 = gt.new_zeros(())
        for pred, target in zip(out.pyramid, targets, strict=True):
            l1 = l1 + F.l1_loss(pred, target)
        return {"l1": l1, "total": l1}


@register_model
def deepdeblur(**overrides: Any) -> DeepDeblur:
    """DeepDeblur MSResNet (release ``GOPRO_L1``): 3 scales, 19 ResBlocks of 64 features, 11,721,321 parameters."""
    return DeepDeblur(**{"n_scales": 3, "n_resblocks": 19, "n_feats": 64, "kernel_size": 5, **overrides})


@register_model
def deepdeblur_tiny(**overrides: Any) -> DeepDeblur:
    """DeepDeblur at CPU size for smoke runs and tests: 3 blocks of 16 features, 126,969 parameters; not published."""
    return DeepDeblur(**{"n_scales": 3, "n_resblocks": 3, "n_feats": 16, "kernel_size": 5, **overrides})
