"""Loss helpers shared by the model families.

Each model owns its ``loss`` (see ``models.base``); the pieces several recipes reuse live here so that every family
computes them the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
