"""SDWNet: a straight dilated network with a wavelet-transform branch.

Paper: W. Zou, M. Jiang, Y. Zhang, L. Chen, Z. Lu and Y. Wu, "SDWNet: A Straight Dilated Network with Wavelet
Transformation for Image Deblurring", ICCV Workshops 2021 (arXiv:2110.05803).
Upstream: https://github.com/FlyEgle/SDWNet at 8e30226 (the network is class ``AtrousNet_SRCNN_tail`` of
``model/NTIRE2021_Deblur/uniA_ELU/model_stage1_dual_branch_tail.py``, its layers in ``.../uniA_ELU/layerlib_stage1/``
``convolution.py`` and ``atrous_block_padding.py``; the GoPro run is ``goprol_train.sh`` -> ``train_goprol.py`` with
``config/paper_prepare/deblur_param/goprol_pretrain_500_from_new_new_best.yaml``, inference ``inference_ddp.py`` with
``config/inference/paper/goprol_base.yaml``, as committed pointed at a RealBlur-R checkpoint and image list). This
file is a re-implementation, not a copy.

No weights are released (the authors in the release's issues #1 and #7), so this model is trainable only: its conf
has ``release: null`` and there is no ``checkpoint=release``.

Both scripts build ``AtrousNet_SRCNN_tail(3, 3, num_blocks=16, d_mult=32, efficientattention=False,
gcattention=False)`` (``train_goprol.py`` l. 175-183, ``inference_ddp.py`` l. 323-331; ``NUM_BLOCKS: 16``,
``WIDTH: 32`` in both configs), 10,748,803 parameters (measured with the release's class), all convolutions without
bias except the three of the wavelet branch. With width ``d`` (32):

    head: 7x7 conv 3 -> d, ELU (full resolution, ``downs[0]``); 3x3 stride-2 conv d -> 2d, ELU (``downs[1]``)
    body: ``num_blocks`` dilated blocks at half resolution, 4d wide; block 0 first projects 2d -> 4d (1x1 conv, ELU).
          A block runs four 3x3 convolutions 4d -> 2d, ELU, with dilations (1, 2, 4, 8) (the last block: (1, 3, 5,
          7)) on the same input, concatenates them (8d), fuses them with a 3x3 conv 8d -> 4d, ELU, and adds its input.
    neck: concatenate ``downs[1]`` (6d), bilinear x2 upsampling (``align_corners=True``), concatenate ``downs[0]``
          (7d), ELU.
    tail: (a) 3x3 conv 7d -> d, ELU, 3x3 conv d -> 3; (b) the wavelet branch ``SRCNN``: Haar DWT, 9x9 conv 7d -> 64,
          ReLU, 5x5 conv 64 -> 32, ReLU, 5x5 conv 32 -> 3 (zero padding, with bias), inverse DWT.
    output: input + (a) + (b): a global residual, unclamped.

Every convolution outside the wavelet branch reflect-pads (``padding_mode="reflect"``, by ``k // 2`` or by its
dilation); the stride-2 convolution reflect-pads by 1. The release's ``ConvAftermath`` (bias and scale) is inert:
its ``b`` and ``s`` are ``None``, so it only applies the activation, and it holds no state.

The Haar transform (``dwt_init``/``iwt_init``) is reproduced exactly, layout included: ``dwt`` halves both sides and
stacks the four sub-bands (LL, HL, LH, HH, each the sum of the four polyphase samples / 2 with the signs of the
release) along the BATCH axis, so the branch's convolutions see 4N images with 7d channels each; ``iwt`` reads the
four N-blocks back and is the exact inverse of ``dwt``. Both need even H and W.

Input range: the release feeds 0-255 RGB (``INPUT.RANGE: 255``, ``NORM: False``: ``ToTensor2`` in
``data/augments.py`` l. 179-199, no mean/std), and the network is not scale-equivariant (ELU). ``restore`` scales
the [0, 1] input by 255, runs the network and divides by 255.

Names, shapes and registration order of the parameters are the release's (``downsampling_layers.0.conv.weight``,
``SRCNN.conv1.weight``, ``blocks.0.projection.conv.weight``, ``blocks.3.atrous_layers.2.conv.weight``,
``blocks.3.conv1.conv.weight``, ``output_layer.1.conv.weight`` ...). ``train_goprol.py`` (l. 345-375) saves
``{"epoch", "state_dict", "optimizer"}`` with DDP's ``module.`` prefix stripped; ``models.load_checkpoint`` reads
that file strictly.

Release scoring (cannot be expressed with today's ScoringProtocol keys; recorded here to become a named protocol):
    * GoPro / HIDE: ``utils/calc_psnr_ssim_official.py`` l. 39-48 (``main_sr_hr_pool``, run through l. 89-97; the
      same in ``main``, l. 12-20) on the PNGs of ``inference_ddp.py`` (l. 214-235: output clamped to [0, 255],
      ``numpy.round`` (ties to even) to uint8, written with ``cv2.imwrite``). Both images are read with
      ``cv2.imread`` (BGR uint8) and converted with ``cv2.cvtColor(img, cv2.COLOR_BGR2YCR_CB)``: OpenCV's
      full-range JPEG/BT.601 conversion in 0-255 with channel order (Y, Cr, Cb), ``Y = 0.299 R + 0.587 G + 0.114 B``,
      ``Cr = 0.713 (R - Y) + 128``, ``Cb = 0.564 (B - Y) + 128`` (no 16/235 offsets; OpenCV's fixed-point
      arithmetic, rounded and saturated to uint8).
      PSNR: ``skimage.metrics.peak_signal_noise_ratio(sr_Y, hr_Y)`` on the uint8 Y planes only: data range 255
      (from the dtype), ``10 log10(255^2 / mean((sr_Y - hr_Y)^2))`` in float64; averaged over images.
      SSIM: ``skimage.metrics.structural_similarity(sr, hr, multichannel=True, gaussian_weights=True,
      use_sample_covariance=True)`` on all three uint8 YCrCb channels (data range 255 from the dtype, so C1 =
      (0.01 * 255)^2, C2 = (0.03 * 255)^2): per channel, Gaussian weighting with sigma 1.5, truncate 3.5 (an 11x11
      window, ``scipy.ndimage.gaussian_filter``, mode ``reflect``), the local variances and covariance multiplied by
      the sample-covariance factor NP / (NP - 1) with NP = 11^2 = 121, the SSIM map cropped by 5 px on each side and
      averaged; then the mean over the three channels, and over images. The dataset's protocol
      (``conf/dataset/gopro.yaml``) scores PSNR on RGB and Wang's SSIM with population covariance; per
      ``../shared/reference/releases.md`` this YCrCb / sample-covariance SSIM explains the paper's 0.966.
    * RealBlur: ``eavlute_realblur.py`` is MPRNet's ``evaluate_RealBlur.py`` with three changes in ``image_align``
      (l. 15-62): ECC ``termination_eps = 1e-8`` (l. 29) and ``gaussFiltSize=3`` (l. 36), and a failed
      ``cv2.findTransformECC`` keeps the identity warp (``try``/``except``, l. 35-39). Otherwise as MPRNet: PNGs read
      with ``cv2.imread``, converted to RGB, float32 / 255; intensity matching ``zs = (sum(x z) / sum(z z)) z``,
      homography ECC (100 iterations) on ``COLOR_RGB2GRAY``, ``warpPerspective`` INTER_CUBIC with BORDER_REFLECT and a
      nearest-neighbour validity mask ``cr``; PSNR = ``10 log10(1 / (sum((x cr - zr)^2) / sum(cr)))`` (l. 64-67);
      SSIM = ``structural_similarity(..., multichannel=True, gaussian_weights=True, use_sample_covariance=False,
      data_range=1.0, full=True)`` map times ``cr``, cropped by 5 px, summed per channel over the cropped mask sum,
      averaged over channels (l. 70-80). Predictions and targets are paired by ``natsorted`` position, not by name
      (l. 107-116). ``evaluate_reblur_office.py`` (also in the release) is RealBlur's official script (eps 0,
      gaussFiltSize 5).

Deviations from the release:
    * Padding: the release's network needs even H and W (the stride-2 convolution and the x2 upsampling must give
      back the input size; the DWT splits even/odd rows and columns). Its test script ``inference_ddp.py`` (l.
      408-415, commented "realblur" but applied to every input) reflect-pads the bottom/right to a multiple of 8 and
      crops back, which is what ``forward`` does here (``pad_multiple = 8``, ``pad_mode = "reflect"``). GoPro frames
      (1280x720) are not padded.
    * Small inputs: a reflect-padded convolution needs its padding smaller than the side, so the dilation-8
      convolution at half resolution fails in the release below 18 px a side. ``restore`` reflect-pads (replicate
      where reflection is impossible) such inputs to 18 px on the bottom/right and crops back; inputs of 18 px and
      more (every real frame) run unchanged.
    * ``iwt_init`` allocates its output with ``torch.zeros(...).float().cuda()``; here it is allocated on the input's
      device and dtype (identical on a CUDA float32 run, and makes CPU and float64 runs possible).
    * The release passes one shared ``nn.ELU(inplace=True)`` (and ``nn.ReLU(inplace=True)``) module around; here the
      activations are functional and not in-place (same values and gradients; they hold no state).
    * The unused options of the class (``efficientattention``, ``gcattention``: False in every GoPro config;
      ``max_global_stride``, ``pad_to_fit_global_stride``: stored, never read) are not ported.
    * ``loss`` is the release's objective (``train_goprol.py`` l. 264, 271, 505 with ``L1_Charbonnier: True``,
      ``EPS: 0.001``, ``SSIM: True``, ``L1_ALPHA: 1``, ``SSIM_ALPHA: 1``): Charbonnier(eps 1e-3) + (1 - SSIM), both
      on the 0-255 scale the release trains on, so the Charbonnier term is 255 times ours on [0, 1] (plus eps).
      SSIM is ``loss/generator_loss.py``'s ``SSIM()`` (pytorch_msssim's): data range 255, separable Gaussian window
      11, sigma 1.5 built in float32, valid convolution (no padding), K = (0.01, 0.03), population covariance, mean
      over pixels, channels and batch, computed on the unclamped output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.losses import charbonnier

INPUT_RANGE = 255.0
"""The release feeds and returns 0-255 RGB (``INPUT.RANGE: 255``)."""

DILATIONS = (1, 2, 4, 8)
"""The dilations of the four parallel convolutions of every block but the last (``atrousDim[0]``)."""

LAST_DILATIONS = (1, 3, 5, 7)
"""Those of the last block (``atrousDim[1]``)."""

MIN_SIDE = 2 * (max(DILATIONS) + 1)
"""The smallest side the release's reflect padding accepts: the dilation-8 convolution at half resolution needs a
side > 8 there (18 px); ``restore`` pads smaller inputs up to it."""

CHARBONNIER_EPS = 1e-3
"""``LOSS.EPS`` of the GoPro config, on the 0-255 scale."""

SSIM_WEIGHT = 1.0
"""``LOSS.SSIM_ALPHA`` (``LOSS.L1_ALPHA`` is 1 as well): ``loss = charbonnier + 1 * (1 - ssim)``."""


def dwt(x: Tensor) -> Tensor:
    """The release's Haar DWT (``dwt_init``): (N, C, H, W), H and W even -> (4N, C, H/2, W/2), sub-bands LL, HL, LH,
    HH stacked along the batch axis."""
    x01 = x[:, :, 0::2, :] / 2
    x02 = x[:, :, 1::2, :] / 2
    x1 = x01[:, :, :, 0::2]
    x2 = x02[:, :, :, 0::2]
    x3 = x01[:, :, :, 1::2]
    x4 = x02[:, :, :, 1::2]
    x_ll = x1 + x2 + x3 + x4
    x_hl = -x1 - x2 + x3 + x4
    x_lh = -x1 + x2 - x3 + x4
    x_hh = x1 - x2 - x3 + x4
    return torch.cat((x_ll, x_hl, x_lh, x_hh), 0)


def iwt(x: Tensor) -> Tensor:
    """The release's inverse Haar DWT (``iwt_init``): (4N, C, h, w) -> (N, C, 2h, 2w); the inverse of ``dwt``."""
    n = x.shape[0] // 4
    x1 = x[0:n] / 2
    x2 = x[n : 2 * n] / 2
    x3 = x[2 * n : 3 * n] / 2
    x4 = x[3 * n : 4 * n] / 2
    h = x.new_zeros((n, x.shape[1], 2 * x.shape[2], 2 * x.shape[3]))
    h[:, :, 0::2, 0::2] = x1 - x2 - x3 + x4
    h[:, :, 1::2, 0::2] = x1 - x2 + x3 - x4
    h[:, :, 0::2, 1::2] = x1 + x2 - x3 - x4
    h[:, :, 1::2, 1::2] = x1 + x2 + x3 + x4
    return h


class ReflectConv(nn.Module):
    """A bias-free reflect-padded convolution with an optional ELU: the release's ``Conv2D_ReflectPad`` and
    ``AtrousConv2D_ReflectPad`` (padding ``k // 2``, ``padding``, or the dilation), key ``conv.weight``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        padding: int | None = None,
        act: bool = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation if dilation > 1 else kernel_size // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
            padding_mode="reflect",
        )
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.elu(x) if self.act else x


class AtrousBlock(nn.Module):
    """The release's ``AtrousBlockPad2``: (optional 1x1 projection), four parallel dilated 3x3 convolutions to half
    the width, concatenated and fused by a 3x3 convolution, plus the (projected) input."""

    def __init__(
        self, in_channels: int, out_channels: int, dilations: tuple[int, ...], *, projection: bool = False
    ) -> None:
        super().__init__()
        if projection:
            self.projection = ReflectConv(in_channels, out_channels, 1)
        self.atrous_layers = nn.Sequential(
            *(ReflectConv(out_channels, out_channels // 2, 3, dilation=d) for d in dilations)
        )
        self.conv1 = ReflectConv(out_channels * 2, out_channels, 3)
        self.needs_projection = projection

    def forward(self, x: Tensor) -> Tensor:
        if self.needs_projection:
            x = self.projection(x)
        branches = torch.cat([layer(x) for layer in self.atrous_layers], 1)
        return x + self.conv1(branches)


class WaveletBranch(nn.Module):
    """The release's ``SRCNN`` tail: Haar DWT, 9x9 / 5x5 / 5x5 convolutions (64, 32 features, zero padding, bias),
    ReLU between them, inverse DWT. (N, C, H, W), H and W even -> (N, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=9, padding=4)
        self.conv2 = nn.Conv2d(64, 32, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(32, out_channels, kernel_size=5, padding=2)

    def forward(self, x: Tensor) -> Tensor:
        x = dwt(x)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return iwt(self.conv3(x))


class SDWNet(DeblurModel):
    """SDWNet (``AtrousNet_SRCNN_tail``): (N, 3, H, W) blurry RGB in [0, 1] -> restored, same convention, unclamped.

    ``restore`` needs even H and W (``forward`` reflect-pads to ``pad_multiple`` = 8 as the release's test script).

    Args:
        num_blocks: dilated blocks at half resolution (16 in the release); the first projects, the last uses the
            dilations (1, 3, 5, 7).
        width: the release's ``d_mult`` (32): the head's width; the body is 4x, the neck 7x as wide.
    """

    pad_multiple = 8
    pad_mode = "reflect"

    def __init__(self, *, num_blocks: int = 16, width: int = 32) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"SDWNet: num_blocks must be >= 1, got {num_blocks}")
        if width < 1:
            raise ValueError(f"SDWNet: width must be >= 1, got {width}")
        d = width
        # Registration order as the release's __init__: downsampling_layers, SRCNN, blocks, (upsampling), output_layer.
        self.downsampling_layers = nn.Sequential(
            ReflectConv(3, d, 7),
            ReflectConv(d, 2 * d, 3, stride=2, padding=1),
        )
        self.SRCNN = WaveletBranch(7 * d, 3)
        self.blocks = nn.Sequential(
            *(
                AtrousBlock(
                    2 * d if i == 0 else 4 * d,
                    4 * d,
                    LAST_DILATIONS if i == num_blocks - 1 and i != 0 else DILATIONS,
                    projection=i == 0,
                )
                for i in range(num_blocks)
            )
        )
        self.output_layer = nn.Sequential(ReflectConv(7 * d, d, 3), ReflectConv(d, 3, 3, act=False))

    def network(self, x: Tensor) -> Tensor:
        """The release's ``forward`` on 0-255 RGB, H and W even and >= ``MIN_SIDE``."""
        full = self.downsampling_layers[0](x)
        half = self.downsampling_layers[1](full)
        net = self.blocks(half)
        net = torch.cat((net, half), 1)
        net = F.interpolate(net, scale_factor=2, mode="bilinear", align_corners=True)
        net = F.elu(torch.cat((net, full), 1))
        return x + self.output_layer(net) + self.SRCNN(net)

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) in [0, 1] -> the restoration: the network on ``255 * lq``, divided by 255."""
        h, w = lq.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"SDWNet.restore needs even H and W, got {h}x{w} (forward pads)")
        ph, pw = max(MIN_SIDE - h, 0), max(MIN_SIDE - w, 0)
        x = lq
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        out = self.network(x * INPUT_RANGE) / INPUT_RANGE
        return out[..., :h, :w]

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """(N, 3, H, W) crops, H and W multiples of ``pad_multiple`` -> the restoration (``gt`` is unused)."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's objective on the 0-255 scale: ``Charbonnier(eps 1e-3) + 1 * (1 - SSIM)``.

        Terms: ``charbonnier`` (0-255 scale), ``ssim`` (the SSIM itself, 1 = perfect), ``total``.
        """
        pred, target = out.restored * INPUT_RANGE, gt * INPUT_RANGE
        char = charbonnier(pred, target, eps=CHARBONNIER_EPS)
        ssim = release_ssim(pred, target, data_range=INPUT_RANGE)
        return {"charbonnier": char, "ssim": ssim, "total": char + SSIM_WEIGHT * (1 - ssim)}


def _gauss_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """``_fspecial_gauss_1d`` of the release's ``loss/generator_loss.py`` (computed in float32 as there)."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def release_ssim(x: Tensor, y: Tensor, *, data_range: float = 255.0, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """The release's training SSIM (``loss/generator_loss.py`` ``SSIM()``, pytorch_msssim's ``ssim``): separable
    Gaussian filtering without padding (a side shorter than the window is left unfiltered, as there), K = (0.01,
    0.03), population covariance; the mean over pixels, channels and images."""
    c = x.shape[1]
    win = _gauss_window(win_size, sigma).to(x.device, x.dtype)

    def blur(t: Tensor) -> Tensor:
        for axis in (2, 3):
            if t.shape[axis] >= win_size:
                shape = [1, 1, 1, 1]
                shape[axis] = win_size
                t = F.conv2d(t, win.reshape(shape).expand(c, 1, *shape[2:]), groups=c)
        return t

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu1, mu2 = blur(x), blur(y)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq = blur(x * x) - mu1_sq
    sigma2_sq = blur(y * y) - mu2_sq
    sigma12 = blur(x * y) - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return torch.flatten(ssim_map, 2).mean(-1).mean()


@register_model
def sdwnet(**overrides: Any) -> SDWNet:
    """SDWNet as the release trains it for GoPro: 16 blocks, width 32, 10,748,803 parameters; no released weights."""
    return SDWNet(**{"num_blocks": 16, "width": 32, **overrides})


@register_model
def sdwnet_tiny(**overrides: Any) -> SDWNet:
    """SDWNet at CPU size for smoke runs and tests: 2 blocks, width 8, 424,819 parameters; not a published model."""
    return SDWNet(**{"num_blocks": 2, "width": 8, **overrides})
