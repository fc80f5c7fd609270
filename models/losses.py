"""Loss helpers shared by the model families.

Each model owns its ``loss`` (see ``models.base``); the pieces several recipes reuse live here so that every family
computes them the same way.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"
"""torchvision's ImageNet VGG-19 weights (``IMAGENET1K_V1``), read from ``$TORCH_HOME/hub/checkpoints``."""


def fft_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of the 2-D spectra of ``pred`` and ``target``.

    The full (two-sided) DFT over the last two dimensions, unnormalised, compared as stacked real and imaginary parts:
    the mean runs over N x C x H x W x 2 values. This is exactly what MIMO-UNet's ``L1(torch.rfft(x, signal_ndim=2,
    normalized=False, onesided=False), ...)`` computed; ``torch.rfft`` was removed in torch 1.8, and
    ``torch.view_as_real(torch.fft.fft2(x))`` returns the same (..., H, W, 2) tensor.

    Args:
        pred: (N, C, H, W) prediction.
        target: (N, C, H, W) reference, same shape as ``pred``.

    Returns:
        A scalar tensor. Its scale grows with H x W (an unnormalised DFT sums over the pixels), which is what the
        recipes that use it were tuned with.
    """
    if pred.shape != target.shape:
        raise ValueError(f"fft_l1: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    # float32 on purpose: cuFFT only takes half precision for power-of-two sizes, and under autocast the spectra of
    # a 256 px crop (sums over 65k pixels) would lose most of their precision in fp16 anyway.
    pred_spec = torch.view_as_real(torch.fft.fft2(pred.float()))
    target_spec = torch.view_as_real(torch.fft.fft2(target.float()))
    return F.l1_loss(pred_spec, target_spec)


def psnr_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Negative PSNR of each image, averaged over the batch: ``10/ln(10) * mean_n log(MSE_n + eps)``.

    The ``PSNRLoss`` of BasicSR as NAFNet and HINet train with it (``toY=False``, ``reduction='mean'``): the MSE is
    taken per image over C x H x W, so every image of a batch weighs the same in dB whatever its difficulty. ``eps``
    is the release's 1e-8; it keeps the log finite on a perfect reconstruction.

    Args:
        pred, target: (N, C, H, W), same shape, intensities in [0, 1].

    Returns:
        A scalar tensor: minus the mean PSNR in dB (peak 1), so lower is better.
    """
    if pred.shape != target.shape:
        raise ValueError(f"psnr_loss: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
    return (10.0 / math.log(10.0)) * torch.log(mse + eps).mean()


def charbonnier(pred: Tensor, target: Tensor, *, eps: float = 1e-3) -> Tensor:
    """Charbonnier distance ``mean(sqrt((pred - target)^2 + eps^2))`` (MPRNet's ``CharbonnierLoss``, eps 1e-3)."""
    if pred.shape != target.shape:
        raise ValueError(f"charbonnier: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    diff = pred - target
    return torch.sqrt(diff * diff + eps * eps).mean()


_EDGE_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)
"""MPRNet's 5-tap binomial-like low-pass; its outer product is the 2-D kernel of ``laplacian``."""


def _gauss5(x: Tensor) -> Tensor:
    taps = torch.tensor(_EDGE_TAPS, dtype=x.dtype, device=x.device)
    kernel = torch.outer(taps, taps).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def laplacian(x: Tensor) -> Tensor:
    """One level of a Laplacian pyramid at full size: ``x - G(upsample0(downsample2(G(x))) * 4)``.

    ``G`` is the 5x5 separable low-pass of ``_EDGE_TAPS`` with replicate padding; downsampling keeps the even pixels,
    upsampling puts them back into a zero image at the same places, times 4. This is the band-pass MPRNet's
    ``EdgeLoss`` compares. (N, C, H, W) -> (N, C, H, W).
    """
    low = _gauss5(x)
    sparse = torch.zeros_like(low)
    sparse[:, :, ::2, ::2] = low[:, :, ::2, ::2] * 4
    return x - _gauss5(sparse)


def edge_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MPRNet's ``EdgeLoss``: the Charbonnier distance between the ``laplacian`` band-passes of both images."""
    return charbonnier(laplacian(pred), laplacian(target))


def vgg19_features(last: int, path: Path | None = None, *, needed_by: str, instead: str) -> nn.Module:
    """torchvision's VGG-19 ``features[: last + 1]`` with ImageNet weights from ``path`` (default:
    ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``), frozen, in eval mode. Nothing is downloaded.

    The file may hold the whole torchvision state dict or only its ``features.*`` entries.

    Args:
        last: index of the last layer kept (14: conv3_3, DeblurGAN; 11: relu3_1, Stripformer).
        path: the weights file.
        needed_by: the loss that needs them, and ``instead``: the setting that avoids them (both for the error).

    Raises:
        FileNotFoundError: naming where to place the weights.
    """
    from torchvision.models import vgg19

    path = Path(os.fspath(path)) if path is not None else Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{needed_by} needs torchvision's ImageNet VGG-19 weights at {path} "
            f"(https://download.pytorch.org/models/{VGG19_FILE}, placed by hand; nothing is downloaded here), or use "
            f"{instead}"
        )
    features = vgg19(weights=None).features[: last + 1]
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "features."
    wanted = {f"{prefix}{k}" for k in features.state_dict()}
    features.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k in wanted}, strict=True)
    features.requires_grad_(False)
    return features.eval()
