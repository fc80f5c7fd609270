"""SRN-DeblurNet: the scale-recurrent encoder-decoder, one set of weights applied coarse to fine.

Paper: X. Tao, H. Gao, X. Shen, J. Wang and J. Jia, "Scale-recurrent Network for Deep Image Deblurring", CVPR 2018.
Upstream: https://github.com/jiangsutx/SRN-Deblur at 2caaa85 (TensorFlow 1.4): ``models/model.py`` (``DEBLUR.
generator``, ``build_model``, ``train``, ``test``), ``util/util.py`` (``ResnetBlock``), ``util/BasicConvLSTMCell.py``.
This file is a re-implementation, not a copy; the release's TensorFlow checkpoints load through
``models.tfcheckpoint`` (``checkpoint=release`` or ``python -m benchmark.convert``).

Architecture (``generator``): 3 scales, factor 0.5. At each scale, coarse to fine, the blurry input and the previous
scale's estimate, both resized to the scale (TF 1.x bilinear, ``models.tfops.resize_bilinear_legacy``; the first
scale's "estimate" is the blurry input itself), are concatenated and run through one encoder-decoder whose weights
all scales share: ``enc1_1`` (5x5 conv, c) and three ``ResnetBlock``s (5x5 conv-ReLU-5x5 conv plus identity) at c,
``enc2_1`` (5x5 stride 2, 2c) and three blocks, ``enc3_1`` (stride 2, 4c) and three blocks; for ``lstm`` a
convolutional LSTM (``convLSTM/LSTM_conv``: 3x3 conv of [features, hidden] to 4 x 4c gates i, j, f, o, forget bias
1) whose state is carried across scales (resized by the same bilinear); three blocks ``dec3_*``, ``dec2_4`` (4x4
stride-2 transposed conv) added to the encoder's 2c skip, three blocks, ``dec1_4`` added to the c skip, three blocks
and ``dec1_0`` (5x5 conv to the image, no activation). Every convolution but the blocks' second and ``dec1_0`` has a
ReLU. The finest scale's output is the restoration (no residual to the input). c = 32; all padding is TensorFlow's
'SAME' (``models.tfops.SameConv2d``).

Variants (the release's ``--model``): ``lstm`` (the paper's network, 1 channel: "Current released model weights should
produce PSNR=30.19, SSIM=0.9334 on GOPRO", README), ``gray`` (1 channel, no LSTM) and ``color`` (3 channels, no LSTM,
the one the RealBlur authors fine-tuned). One-channel models restore each of R, G, B as its own gray image (the
release's ``test`` stacks the channels into the batch). Parameters: ``srn`` (lstm) 8,056,609, ``srn_gray``
6,876,449, ``srn_color`` 6,881,251, ``srn_tiny`` (c = 4, lstm) 126,533 (the release's checkpoints add a step counter
``Variable``, not a weight). Module names follow the release's variable scopes (``g_net/enc1_2/conv1/weights`` is
``enc1_2.conv1.weight``); ``models.tfops.from_slim`` maps and permutes them.

Deviations from the release:
    * Input size: the release's placeholder has a fixed size (720x1280 by default, 784x688 for RealBlur in the
      RealBlur authors' command) and ``test`` edge-pads each image at the bottom/right to it (portrait images are
      transposed first, larger ones downscaled bicubically). The network needs multiples of 16; ``forward`` edge-pads
      (``pad_mode = "replicate"``) at the bottom/right to the next multiple of 16 and crops back: identical for
      GoPro's and HIDE's 1280x720 frames, a smaller padded margin than the release's canvas for RealBlur (which
      changes pixels near the bottom/right border); no transposition, no resizing.
    * Rounding: the release saves ``im2uint8``, ``clip * 255`` then ``astype(uint8)`` (truncation): its release
      block says ``saves: uint8_floor``.
    * Training: the release trains ``gray``/``lstm`` on ``tf.image.rgb_to_grayscale`` crops; ``forward_train`` here
      treats R, G and B as three gray images (as the release's test does), so the trainer's RGB batches need no
      conversion. The loss is the release's (sum over scales of the MSE to the bilinear-resized sharp image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._registry import register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.tfops import SameConv2d, from_slim, resize_bilinear_legacy, same_conv_transpose

KIND = Literal["lstm", "gray", "color"]

N_LEVELS = 3
"""Scales, coarse to fine, factor 0.5 (``DEBLUR.__init__``: ``n_levels = 3``, ``scale = 0.5``)."""

PAD_MULTIPLE = 16
"""Two stride-2 stages at the coarsest scale (1/4): the release's "height and width be multiples of 16"."""

FORGET_BIAS = 1.0
"""``BasicConvLSTMCell(forget_bias=1.0)``: added to the forget gate's pre-activation."""


class ResnetBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))``, 5x5, constant width: the release's ``util.ResnetBlock`` (scopes conv1, conv2)."""

    def __init__(self, channels: int, kernel: int = 5) -> None:
        super().__init__()
        self.conv1 = SameConv2d(channels, channels, kernel)
        self.conv2 = SameConv2d(channels, channels, kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


class ConvLSTM(nn.Module):
    """``BasicConvLSTMCell`` (scope ``convLSTM``): one 3x3 conv ``LSTM_conv`` of [x, h] to the gates i, j, f, o.

    State (N, 2C, h, w) = [c, h] stacked on channels, as the release keeps it (``state_is_tuple=False``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.LSTM_conv = SameConv2d(2 * channels, 4 * channels, 3)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        c, h = state.chunk(2, dim=1)
        i, j, f, o = self.LSTM_conv(torch.cat([x, h], 1)).chunk(4, dim=1)
        new_c = c * torch.sigmoid(f + FORGET_BIAS) + torch.sigmoid(i) * torch.tanh(j)
        new_h = torch.tanh(new_c) * torch.sigmoid(o)
        return new_h, torch.cat([new_c, new_h], 1)


@dataclass
class SRNTrainOutput(TrainOutput):
    """``restored`` is the finest scale's output (N, 3, H, W); ``scales`` every scale's, coarse to fine."""

    scales: list[Tensor]


def _blocks(channels: int, n: int = 3) -> list[ResnetBlock]:
    return [ResnetBlock(channels) for _ in range(n)]


class SRN(DeblurModel):
    """SRN-DeblurNet: (N, 3, H, W) blurry RGB in [0, 1] -> restored (N, 3, H, W), same convention, unclamped.

    ``restore`` needs H and W to be multiples of 16 (``forward`` edge-pads). Module names are the release's scopes.

    Args:
        kind: ``lstm`` (the paper's), ``gray`` or ``color`` (the release's ``--model``).
        channels: width c of the first stage (32); the others are 2c and 4c.
    """

    pad_multiple = PAD_MULTIPLE
    pad_mode = "replicate"

    def __init__(self, *, kind: KIND = "lstm", channels: int = 32) -> None:
        super().__init__()
        if kind not in ("lstm", "gray", "color"):
            raise ValueError(f"SRN: kind must be lstm, gray or color, got {kind!r}")
        if channels < 1:
            raise ValueError(f"SRN: channels must be >= 1, got {channels}")
        self.kind = kind
        self.chns = 3 if kind == "color" else 1
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        # Created in the release's order (generator, l. 84-118).
        self.enc1_1 = SameConv2d(2 * self.chns, c1, 5)
        self.enc1_2, self.enc1_3, self.enc1_4 = _blocks(c1)
        self.enc2_1 = SameConv2d(c1, c2, 5, stride=2)
        self.enc2_2, self.enc2_3, self.enc2_4 = _blocks(c2)
        self.enc3_1 = SameConv2d(c2, c3, 5, stride=2)
        self.enc3_2, self.enc3_3, self.enc3_4 = _blocks(c3)
        self.convLSTM = ConvLSTM(c3) if kind == "lstm" else None
        self.dec3_3, self.dec3_2, self.dec3_1 = _blocks(c3)
        self.dec2_4 = same_conv_transpose(c3, c2)
        self.dec2_3, self.dec2_2, self.dec2_1 = _blocks(c2)
        self.dec1_4 = same_conv_transpose(c2, c1)
        self.dec1_3, self.dec1_2, self.dec1_1 = _blocks(c1)
        self.dec1_0 = SameConv2d(c1, self.chns, 5)
        self.state_channels = 2 * c3

    def _scale(self, inp: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One pass of the shared encoder-decoder on [blur, estimate] (N, 2 chns, h, w) -> (estimate, state)."""
        conv1 = self.enc1_4(self.enc1_3(self.enc1_2(F.relu(self.enc1_1(inp)))))
        conv2 = self.enc2_4(self.enc2_3(self.enc2_2(F.relu(self.enc2_1(conv1)))))
        conv3 = self.enc3_4(self.enc3_3(self.enc3_2(F.relu(self.enc3_1(conv2)))))
        if self.convLSTM is not None:
            conv3, state = self.convLSTM(conv3, state)
        deconv = self.dec3_1(self.dec3_2(self.dec3_3(conv3)))
        deconv = self.dec2_1(self.dec2_2(self.dec2_3(F.relu(self.dec2_4(deconv)) + conv2)))
        deconv = self.dec1_1(self.dec1_2(self.dec1_3(F.relu(self.dec1_4(deconv)) + conv1)))
        return self.dec1_0(deconv), state

    def scales(self, x: Tensor) -> list[Tensor]:
        """(N, chns, H, W), H and W multiples of 16 -> every scale's estimate, coarse to fine (``generator``)."""
        n, _, h, w = x.shape
        state = x.new_zeros(n, self.state_channels, h // 4, w // 4) if self.convLSTM is not None else None
        pred, outs = x, []
        for i in range(N_LEVELS):
            factor = 0.5 ** (N_LEVELS - i - 1)
            size = (round(h * factor), round(w * factor))
            blur = resize_bilinear_legacy(x, size)
            pred = resize_bilinear_legacy(pred.detach(), size)  # tf.stop_gradient
            if state is not None:
                state = resize_bilinear_legacy(state, (size[0] // 4, size[1] // 4))
            pred, state = self._scale(torch.cat([blur, pred], 1), state)
            outs.append(pred)
        return outs

    def _as_rgb(self, outs: list[Tensor], n: int) -> list[Tensor]:
        """One-channel models ran R, G, B as a batch of gray images: fold them back to (N, 3, h, w)."""
        if self.chns == 3:
            return outs
        return [o.reshape(n, 3, *o.shape[-2:]) for o in outs]

    def _run(self, lq: Tensor) -> list[Tensor]:
        n = lq.shape[0]
        x = lq if self.chns == 3 else lq.reshape(n * 3, 1, *lq.shape[-2:])
        return self._as_rgb(self.scales(x), n)

    def restore(self, lq: Tensor) -> Tensor:
        """Padded (N, 3, H, W) -> the finest scale's output (the release's ``deblur[-1]``)."""
        return self._run(lq)[-1]

    def forward_train(self, lq: Tensor, gt: Tensor) -> SRNTrainOutput:
        """(N, 3, H, W) crops, H and W multiples of 16 -> every scale's estimate (``gt`` is unused)."""
        self.check_train_size(lq)
        outs = self._run(lq)
        return SRNTrainOutput(restored=outs[-1], scales=outs)

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """The release's ``build_model`` loss: the sum over scales of the MSE to ``gt`` resized (TF bilinear) to each
        scale; ``mse_fine`` (the finest scale's term) is logged."""
        if not isinstance(out, SRNTrainOutput):
            raise TypeError(f"SRN.loss needs forward_train's SRNTrainOutput, got {type(out).__name__}")
        terms = [F.mse_loss(o, resize_bilinear_legacy(gt, o.shape[-2:])) for o in out.scales]
        return {"mse_fine": terms[-1].detach(), "total": torch.stack(terms).sum()}

    def convert_release(self, tensors: Mapping[str, np.ndarray], source: str) -> dict[str, Tensor]:
        """The release's TF-slim variables (scope ``g_net``) -> this model's state dict (``models.tfops.from_slim``)."""
        return from_slim(tensors, self.state_dict(), scope="g_net", source=source)


@register_model
def srn(**overrides: Any) -> SRN:
    """SRN-DeblurNet as in the paper (``--model lstm``): c = 32, ConvLSTM, gray, 8,056,609 parameters."""
    return SRN(**{"kind": "lstm", "channels": 32, **overrides})


@register_model
def srn_gray(**overrides: Any) -> SRN:
    """SRN's ``--model gray`` (no LSTM, one channel): 6,876,449 parameters."""
    return SRN(**{"kind": "gray", "channels": 32, **overrides})


@register_model
def srn_color(**overrides: Any) -> SRN:
    """SRN's ``--model color`` (no LSTM, RGB; the RealBlur authors' fine-tuned weights): 6,881,251 parameters."""
    return SRN(**{"kind": "color", "channels": 32, **overrides})


@register_model
def srn_tiny(**overrides: Any) -> SRN:
    """SRN at CPU size for smoke runs and tests: c = 4, ConvLSTM, 126,533 parameters; not a published model."""
    return SRN(**{"kind": "lstm", "channels": 4, **overrides})
