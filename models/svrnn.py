"""Spatially variant RNN deblurring (Zhang et al. 2018): a CNN predicts the weights of spatial RNNs.

Paper: J. Zhang, J. Pan, J. Ren, Y. Song, L. Bao, R. W. H. Lau and M.-H. Yang, "Dynamic Scene Deblurring Using
Spatially Variant Recurrent Neural Networks", CVPR 2018. Upstream: https://github.com/zhjwustc/
cvpr18_rnn_deblur_matcaffe at 3e470fe (MatCaffe with custom layers): the network ``matlab/test/model/test.prototxt``
(73 layers), the recurrence ``src/caffe/layers/gaterecurrent_layer.cpp`` (``GateRecurrentLayer::Forward_cpu``), the
upsampling ``src/caffe/layers/resize_layer.cpp`` with ``src/caffe/util/util_img.cpp`` (``BiLinearResizeMat_cpu``),
the test ``matlab/test/test.m``, training ``matlab/train/{train.m, dataconfig.m, Gen_training_deblur2.m, L2Loss.m,
model/solver.prototxt}``. The weights ``LRNN_iter_200000.caffemodel`` (Google Drive, README) load through
``models.caffemodel`` (``checkpoint=release`` or ``python -m benchmark.convert``). This file is a re-implementation.

Architecture (widths for c = 16, the release's): a feature branch ``conve1_1`` (11x11, c, LeakyReLU 0.1) and
``conve1_2`` (7x7 stride 2, 2c, no activation); a guidance branch, VGG-like, ``convg1_*`` (4c), max-pool, ``convg2_*``
(8c), pool, ``convg3_1..3`` (16c), pool, ``convg4_1..2`` (32c), ``convg4_3`` (16c), all 3x3 + ReLU; its decoder
upsamples x2 (``Resize``), concatenates ``convg3_2``, ``convgd1``/``convgd1_2`` (8c), upsamples, concatenates
``convg2_2``, ``convgd2`` (16c) and ``convgd2_2`` (32 x 2c / 2 = 16 maps of 2c channels, tanh): the RNN weights, at
half resolution, sliced into 16 gate maps (``g_RNN<k>_{x1,y1,x2,y2}``). Four RNN stages ``rnn<k>_1..4``: gated
recurrences of the features along the four directions (``GateRecurrent``, below), concatenated and fused by
``conv_rnn<k>`` (3x3 to 2c, LeakyReLU 0.1), the first on ``conve1_2``, each next on the previous fusion. The decoder
concatenates ``conve1_2`` with the last fusion, ``convd1_1`` (9x9, c, LeakyReLU 0.1), upsamples x2, concatenates
``conve1_1`` and ``convd1_2`` (5x5, to RGB): the restoration (no residual).

``GateRecurrent`` (no weights of its own in this configuration: ``use_wx``, ``use_wh``, ``use_bias`` false, linear
activation, ``restrict_g`` 1): along its direction, ``h_t = x_t + g_t * (h_{t-1} - x_t)`` with ``h_{-1} = 0``; the
``horizontal`` layers scan the last axis (``reverse``: from its end), the others the one before. Its three blobs
(``W_x``, ``W_h``, bias, 2c x 2c, 2c x 2c, 2c) are in the release's file but unused: the conversion checks their
shapes and drops them. ``Resize`` (``BILINEAR``, x2): source ``dst / 2`` (no half-pixel offset), and a neighbour
beyond the last row or column contributes nothing (its weight is dropped, not renormalised: the last row and column
are halved in part), as ``BiLinearResizeMat_cpu`` computes it. Max-pooling rounds up (Caffe's ceil mode).

Orientation: MatCaffe reads MATLAB's column-major H x W x 3 image as a blob of height W and width H, so the release's
network runs on the transposed image (the prototxt's ``input_dim: 1 3 1280 720`` for 720 x 1280 frames), and its
output is transposed back on return. ``forward`` does the same, so the release's weights see what they were trained
on; module names are the prototxt's layer names.

Parameters: 9,227,027 (``svrnn``), 145,661 (``svrnn_tiny``, c = 2); the GateRecurrent blobs add 16 x 2,080 unused
values to the release's file.

Deviations from the release:
    * Input size: the release's test feeds whole frames at the prototxt's 1280 x 720 (no padding; GoPro and HIDE fit).
      Three poolings need multiples of 8: ``forward`` reflect-pads (``pad_mode = "reflect"``) other sizes at the
      bottom/right and crops back.
    * Rounding: ``test.m`` writes ``imwrite(clean, ...)`` of a single array: MATLAB's ``im2uint8``, clamped and
      rounded half away from zero (``saves: uint8_half_up``).
    * Parity: Caffe cannot be built here; the float64 goldens of ``tests/test_svrnn.py`` come from a NumPy
      transliteration of the release's C++ CPU loops (GateRecurrent's permutations and recursion, BiLinearResizeMat's
      loop, Caffe's convolution and ceil-mode pooling), not from Caffe itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms
from models.checkpoint import CheckpointError

N_RNN_STAGES = 4
DIRECTIONS = ("x1", "y1", "x2", "y2")
"""The order of the gate maps in the ``slice`` layer's tops, per stage; ``rnn<k>_1`` reads x1 (horizontal),
``_2`` x2 (horizontal, reversed), ``_3`` y1 (vertical), ``_4`` y2 (vertical, reversed), as the prototxt sets them."""
SLOPE = 0.1
"""The LeakyReLU slope of the feature branch and the RNN fusions (``relu_param { negative_slope: 0.1 }``)."""


def gate_recurrent(x: Tensor, gate: Tensor, *, horizontal: bool, reverse: bool) -> Tensor:
    """``GateRecurrent`` of the release (see the module docstring): (N, C, H, W) features and gates -> (N, C, H, W).

    ``h_t = x_t + g_t * (h_{t-1} - x_t)``, the operations in ``Forward_cpu``'s order (``L = -x + h``, ``h = g * L``,
    ``h = x + h``); ``horizontal`` runs along W, else along H; ``reverse`` from the far end.
    """
    dim = -1 if horizontal else -2
    steps = x.shape[dim]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    out = [None] * steps
    h = None
    for t in order:
        x_t, g_t = x.select(dim, t), gate.select(dim, t)
        h = x_t - g_t * x_t if h is None else x_t + g_t * (h - x_t)
        out[t] = h
    return torch.stack(out, dim=dim)


def caffe_resize_x2(x: Tensor) -> Tensor:
    """The release's ``Resize`` (``BILINEAR``, scale 2): (N, C, H, W) -> (N, C, 2H, 2W), ``BiLinearResizeMat_cpu``.

    Source ``(dst_h / 2, dst_w / 2)``; the four neighbours weighted bilinearly, those beyond the last row or column
    left out without renormalising (a zero border here).
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, 1, 0, 1))
    ys = torch.arange(2 * h, device=x.device) // 2
    xs = torch.arange(2 * w, device=x.device) // 2
    fy = (torch.arange(2 * h, device=x.device) % 2).to(x.dtype).mul_(0.5)[:, None]
    fx = (torch.arange(2 * w, device=x.device) % 2).to(x.dtype).mul_(0.5)
    rows0, rows1 = padded[..., ys, :], padded[..., ys + 1, :]
    a, b = rows0[..., xs], rows0[..., xs + 1]
    c, d = rows1[..., xs], rows1[..., xs + 1]
    return (1 - fy) * (1 - fx) * a + (1 - fy) * fx * b + fy * (1 - fx) * c + fy * fx * d


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2)


class SVRNN(DeblurModel):
    """Zhang et al. 2018: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs multiples of 8 (``forward`` pads) and runs the network on the transposed image, as MatCaffe
    does (module docstring). Module names are the release's layer names.

    Args:
        channels: c, the width of ``conve1_1`` (16 in the release); every other width is a multiple of it.
    """

    pad_multiple = 8
    pad_mode = "reflect"

    def __init__(self, *, channels: int = 16) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"SVRNN: channels must be >= 1, got {channels}")
        c = channels
        r = 2 * c  # RNN width: conve1_2's channels, each gate map's
        self.rnn_channels = r
        self.conve1_1, self.conve1_2 = _conv(3, c, 11), _conv(c, r, 7, stride=2)
        self.convg1_1, self.convg1_2 = _conv(3, 4 * c, 3), _conv(4 * c, 4 * c, 3)
        self.convg2_1, self.convg2_2 = _conv(4 * c, 8 * c, 3), _conv(8 * c, 8 * c, 3)
        self.convg3_1, self.convg3_2, self.convg3_3 = (_conv(i, 16 * c, 3) for i in (8 * c, 16 * c, 16 * c))
        self.convg4_1, self.convg4_2 = _conv(16 * c, 32 * c, 3), _conv(32 * c, 32 * c, 3)
        self.convg4_3 = _conv(32 * c, 16 * c, 3)
        self.convgd1, self.convgd1_2 = _conv(32 * c, 8 * c, 3), _conv(8 * c, 8 * c, 3)
        self.convgd2, self.convgd2_2 = _conv(16 * c, 16 * c, 3), _conv(16 * c, 4 * N_RNN_STAGES * r, 3)
        for k in range(1, N_RNN_STAGES + 1):
            setattr(self, f"conv_rnn{k}", _conv(4 * r, r, 3))
        self.convd1_1, self.convd1_2 = _conv(2 * r, c, 9), _conv(2 * c, 3, 5)

    def _gates(self, x: Tensor) -> list[Tensor]:
        """The guidance branch: (N, 3, H, W) -> the 16 gate maps (N, 2c, H/2, W/2), in the ``slice`` layer's order."""
        g = F.relu(self.convg1_2(F.relu(self.convg1_1(x))))
        g2 = F.relu(self.convg2_2(F.relu(self.convg2_1(F.max_pool2d(g, 2, ceil_mode=True)))))
        g3 = F.relu(self.convg3_2(F.relu(self.convg3_1(F.max_pool2d(g2, 2, ceil_mode=True)))))
        g4 = F.max_pool2d(F.relu(self.convg3_3(g3)), 2, ceil_mode=True)
        g4 = F.relu(self.convg4_3(F.relu(self.convg4_2(F.relu(self.convg4_1(g4))))))
        gd = torch.cat([g3, caffe_resize_x2(g4)], 1)
        gd = F.relu(self.convgd1_2(F.relu(self.convgd1(gd))))
        gd = torch.cat([g2, caffe_resize_x2(gd)], 1)
        gd = torch.tanh(self.convgd2_2(F.relu(self.convgd2(gd))))
        return list(gd.split(self.rnn_channels, dim=1))

    def _network(self, x: Tensor) -> Tensor:
        """The prototxt's graph on a blob (N, 3, H, W) in the release's orientation (already transposed)."""
        e1 = F.leaky_relu(self.conve1_1(x), SLOPE)
        e2 = self.conve1_2(e1)
        gates = self._gates(x)
        feat = e2
        for k in range(1, N_RNN_STAGES + 1):
            stage = dict(zip(DIRECTIONS, gates[4 * (k - 1) : 4 * k], strict=True))
            outs = [
                gate_recurrent(feat, stage["x1"], horizontal=True, reverse=False),
                gate_recurrent(feat, stage["x2"], horizontal=True, reverse=True),
                gate_recurrent(feat, stage["y1"], horizontal=False, reverse=False),
                gate_recurrent(feat, stage["y2"], horizontal=False, reverse=True),
            ]
            feat = F.leaky_relu(getattr(self, f"conv_rnn{k}")(torch.cat(outs, 1)), SLOPE)
        d = F.leaky_relu(self.convd1_1(torch.cat([e2, feat], 1)), SLOPE)
        return self.convd1_2(torch.cat([e1, caffe_resize_x2(d)], 1))

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> restored: the network on the transposed image, transposed back (MatCaffe)."""
        return self._network(lq.transpose(-1, -2)).transpose(-1, -2)

    def loss(self, out, gt: Tensor) -> LossTerms:
        """``L2Loss.m``: the summed squared error over each image, halved, averaged over the batch; ``mse`` logged."""
        diff = out.restored - gt
        total = diff.pow(2).sum() / 2 / diff.shape[0]
        return {"mse": diff.detach().pow(2).mean(), "total": total}

    def convert_release(self, layers: Mapping[str, list[np.ndarray]], source: str) -> dict[str, Tensor]:
        """The release's layers (``models.caffemodel.read_caffemodel``) -> this model's state dict.

        Convolutions carry (weight, bias); the 16 ``rnn<k>_<j>`` layers three unused blobs, checked and dropped.
        Raises ``CheckpointError`` naming a missing, extra or misshapen layer.
        """
        own = self.state_dict()
        convs = list(dict.fromkeys(key.rpartition(".")[0] for key in own))  # the prototxt's order
        rnns = {f"rnn{k}_{j}" for k in range(1, N_RNN_STAGES + 1) for j in range(1, 5)}
        extra = sorted(set(layers) - set(convs) - rnns)
        missing = sorted(set(convs) - set(layers))
        if extra or missing:
            raise CheckpointError(
                f"Caffe model {source} does not fit {self.registry_name or 'svrnn'}: layers missing "
                f"{missing or 'none'}, unexpected {extra or 'none'}; is it LRNN_iter_200000.caffemodel of this variant?"
            )
        state = {}
        for name in convs:
            blobs = layers[name]
            weight, bias = own[f"{name}.weight"], own[f"{name}.bias"]
            if len(blobs) != 2 or blobs[0].size != weight.numel() or blobs[1].size != bias.numel():
                raise CheckpointError(
                    f"Caffe model {source}: layer {name!r} has blobs {[tuple(b.shape) for b in blobs]}, the "
                    f"model's {tuple(weight.shape)} and {tuple(bias.shape)}; is it this variant?"
                )
            state[f"{name}.weight"] = torch.from_numpy(blobs[0]).reshape(weight.shape).to(weight.dtype)
            state[f"{name}.bias"] = torch.from_numpy(blobs[1]).reshape(bias.shape).to(bias.dtype)
        r = self.rnn_channels
        for name in sorted(rnns & set(layers)):
            shapes = [tuple(b.shape) for b in layers[name]]
            if shapes != [(1, 1, r, r), (1, 1, r, r), (1, 1, 1, r)]:
                raise CheckpointError(f"Caffe model {source}: GateRecurrent layer {name!r} has blobs {shapes}")
        return state


@register_model
def svrnn(**overrides: Any) -> SVRNN:
    """Zhang et al. 2018 (release ``LRNN_iter_200000.caffemodel``): c = 16, 9,227,027 parameters."""
    return SVRNN(**{"channels": 16, **overrides})


@register_model
def svrnn_tiny(**overrides: Any) -> SVRNN:
    """Zhang et al. 2018 at CPU size for smoke runs and tests: c = 2, 145,661 parameters; not a published model."""
    return SVRNN(**{"channels": 2, **overrides})
