"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019), the building block of MSFS-Net's FSM.

MSFS-Net's release (LiQiang0307/MSFS-Net, ``models/octconv.py``) vendors d-li14/octconv.pytorch. This module is our
own implementation of the part MSFS-Net uses (stride 1, groups 1, no bias), with the release's attribute names so its
weights load: ``conv_l2l``, ``conv_l2h``, ``conv_h2l``, ``conv_h2h`` in :class:`OctaveConv` and ``conv``, ``bn_h``,
``bn_l`` in :class:`OctConvBNReLU`, registered in the release's order so ``state_dict()`` lists keys identically.

The low-frequency branch lives at exactly half the resolution of the high-frequency one: 2x2 average pooling (stride
2) goes down and nearest-neighbour x2 upsampling goes up (paper Eqs. 1-2; the release's ``nn.AvgPool2d(2, 2)`` and
``nn.Upsample(scale_factor=2, mode="nearest")``). Both maps therefore need even height and width; unlike the release,
which zero-pads a mismatched ``x_l2h`` inside a ``try/except``, an odd size is an error here, and callers pad first.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

OctFeatures = tuple[Tensor, Tensor | None]
"""(high, low): high (N, C_h, H, W); low (N, C_l, H/2, W/2), or None when a layer has no low-frequency output."""


def _split(channels: int, alpha: float) -> tuple[int, int]:
    """(high, low) channel counts of ``channels`` with a fraction ``alpha`` at low frequency (release: ``int``)."""
    low = int(alpha * channels)
    return channels - low, low


class OctaveConv(nn.Module):
    """Octave convolution, paper Eqs. 1-2: Y^H = f(X^H) + up(f(X^L)), Y^L = f(X^L) + f(pool(X^H)).

    Args:
        in_channels: total input channels (high + low).
        out_channels: total output channels (high + low).
        kernel_size: odd kernel size; padding keeps the spatial size.
        alpha_in: fraction of input channels at low frequency, in [0, 1). 0 means the input is a plain tensor.
        alpha_out: fraction of output channels at low frequency, in [0, 1). 0 means no low-frequency output.

    Input: ``x_h`` (N, C_h, H, W) when ``alpha_in == 0``, else the pair (x_h, x_l) with x_l (N, C_l, H/2, W/2); H and W
    even. Output: (y_h, y_l), y_h (N, out_h, H, W), y_l (N, out_l, H/2, W/2) or None when ``alpha_out == 0``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, alpha_in: float, alpha_out: float):
        super().__init__()
        if not (0 <= alpha_in < 1 and 0 <= alpha_out < 1):
            raise ValueError(f"alphas must lie in [0, 1), got alpha_in={alpha_in}, alpha_out={alpha_out}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
        in_h, in_l = _split(in_channels, alpha_in)
        out_h, out_l = _split(out_channels, alpha_out)

        def branch(cin: int, cout: int) -> nn.Conv2d | None:
            if cin == 0 or cout == 0:
                return None
            return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)

        # Registration order l2l, l2h, h2l, h2h is the release's, so state_dict() key order matches too.
        self.conv_l2l = branch(in_l, out_l)
        self.conv_l2h = branch(in_l, out_h)
        self.conv_h2l = branch(in_h, out_l)
        self.conv_h2h = branch(in_h, out_h)

    def forward(self, x: Tensor | OctFeatures) -> OctFeatures:
        x_h, x_l = (x, None) if isinstance(x, Tensor) else x
        assert self.conv_h2h is not None  # alpha_out < 1 guarantees a high-frequency output
        y_h = self.conv_h2h(x_h)
        y_l = self.conv_h2l(F.avg_pool2d(x_h, 2)) if self.conv_h2l is not None else None
        if x_l is not None:
            if self.conv_l2h is not None:
                y_h = y_h + F.interpolate(self.conv_l2h(x_l), scale_factor=2.0, mode="nearest")
            if self.conv_l2l is not None:
                l2l = self.conv_l2l(x_l)
                y_l = l2l if y_l is None else y_l + l2l
        return y_h, y_l


class OctConvBNReLU(nn.Module):
    """An :class:`OctaveConv` followed by BatchNorm + ReLU on each frequency (release: ``Conv_BN_ACT``).

    Same arguments, input and output as :class:`OctaveConv`; the outputs are non-negative.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, alpha_in: float, alpha_out: float):
        super().__init__()
        self.conv = OctaveConv(in_channels, out_channels, kernel_size, alpha_in=alpha_in, alpha_out=alpha_out)
        out_h, out_l = _split(out_channels, alpha_out)
        self.bn_h = nn.BatchNorm2d(out_h)
        self.bn_l = nn.BatchNorm2d(out_l) if out_l else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor | OctFeatures) -> OctFeatures:
        y_h, y_l = self.conv(x)
        y_h = self.act(self.bn_h(y_h))
        if y_l is not None:
            assert self.bn_l is not None
            y_l = self.act(self.bn_l(y_l))
        return y_h, y_l
