"""The forward contract every registered model follows.

``model(lq) -> restored``: ``lq`` is a blurry batch (N, 3, H, W), RGB in [0, 1], any H and W; ``restored`` has the
same shape and range convention (the network may overshoot [0, 1]; evaluation clamps and quantises). Models pad
internally to the multiple their architecture needs and crop back.

Training goes through ``forward_train(lq, gt) -> TrainOutput`` (a model-specific dataclass holding everything its loss
reads) and ``loss(out, gt) -> LossTerms`` (named scalar terms, ``"total"`` is the one that is optimised). Each model
owns its loss, so the trainer never needs to know which outputs a network produces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

LossTerms = dict[str, Tensor]
"""Named scalar loss terms; the key ``"total"`` is the value that is back-propagated."""


@dataclass
class TrainOutput:
    """What ``forward_train`` returns. Subclasses add the extra tensors their loss reads.

    Attributes:
        restored: the full-resolution restoration (N, 3, H, W), the same tensor ``forward`` would return.
    """

    restored: Tensor


PAD_MODES = ("reflect", "zero", "replicate")
"""How ``forward`` pads an input to the architecture's multiple (``DeblurModel.pad_mode``)."""


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "reflect") -> tuple[Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom/right to a multiple of ``multiple``; returns the padded tensor and (H, W).

    ``reflect`` (MPRNet's and Restormer's test scripts on RealBlur, MSFS-Net's ``eval_R.py``) keeps image statistics
    at the border; an input too small to reflect falls back to replicate padding. ``zero`` is NAFNet's and HINet's
    ``check_image_size``. ``replicate`` repeats the last row and column (``np.pad(..., 'edge')`` of the TensorFlow
    releases' test scripts, SRN and PSS-NSC).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "zero":
        return F.pad(x, (0, pw, 0, ph)), (h, w)
    if mode == "replicate":
        return F.pad(x, (0, pw, 0, ph), mode="replicate"), (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class DeblurModel(nn.Module):
    """Base class of every registered model.

    Subclasses implement ``restore(lq)`` on inputs whose height and width are multiples of ``pad_multiple``, and
    usually override ``forward_train``/``loss``. The default ``loss`` is the L1 distance of ``restored`` to ``gt``.

    Attributes:
        pad_multiple: the spatial multiple ``restore`` needs (e.g. 4 for two stride-2 levels).
        pad_mode: how ``forward`` pads to it by default (a key of ``PAD_MODES``): as the model's release does.
        registry_name: set by ``create_model`` to the registry key the instance was built from.
    """

    pad_multiple: int = 1
    pad_mode: str = "reflect"
    registry_name: str = ""

    def restore(self, lq: Tensor) -> Tensor:
        """Restore an input already padded to ``pad_multiple``: (N, 3, H, W) -> (N, 3, H, W)."""
        raise NotImplementedError

    def forward(self, lq: Tensor, *, pad_mode: str | None = None) -> Tensor:
        """(N, 3, H, W) blurry RGB in [0, 1], any H, W -> restored (N, 3, H, W); padded to ``pad_multiple`` with
        ``pad_mode`` (default: the model's own, ``self.pad_mode``) and cropped back."""
        if lq.dim() != 4 or lq.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) RGB batch, got shape {tuple(lq.shape)}")
        padded, (h, w) = pad_to_multiple(lq, self.pad_multiple, pad_mode or self.pad_mode)
        return self.restore(padded)[..., :h, :w]

    def check_train_size(self, lq: Tensor) -> None:
        """Training crops must already be multiples of ``pad_multiple`` (padding would leak into the loss)."""
        h, w = lq.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(
                f"{self.registry_name or type(self).__name__}: training crop {h}x{w} is not a multiple of "
                f"{self.pad_multiple}; set train.crop_size to a multiple of {self.pad_multiple}"
            )

    def forward_train(self, lq: Tensor, gt: Tensor) -> TrainOutput:
        """Training forward pass; ``gt`` is available to models whose loss re-encodes the ground truth."""
        self.check_train_size(lq)
        return TrainOutput(restored=self.restore(lq))

    def adversary(self) -> nn.Module | None:
        """A fresh discriminator side (``models.adversarial.Adversary``) when the model's release trains it as a GAN
        generator, else ``None``; the trainer builds it once per run and checkpoints it beside the model."""
        return None

    def loss(self, out: TrainOutput, gt: Tensor) -> LossTerms:
        """Named loss terms for ``out`` against ``gt`` (N, 3, H, W) in [0, 1]."""
        l1 = F.l1_loss(out.restored, gt)
        return {"l1": l1, "total": l1}

    @property
    def num_parameters(self) -> int:
        """Number of parameters as ``parameters()`` counts them (shared modules once)."""
        return sum(p.numel() for p in self.parameters())


Attend = Callable[[Tensor], Tensor]
"""The global step of a ``GlobalAttention``: (N, C, h, w) maps -> (N, C', h, w), every output reading all h x w."""


class GlobalAttention(nn.Module):
    """Base of attention blocks whose every output pixel reads the whole feature map (Restormer's transposed
    attention): ``forward(x) = project(attend(features(x)))``.

    ``features`` holds the spatially local part before the global step (convolutions, shape (N, C, H, W) ->
    (N, C', H, W)), ``attend`` the global step itself, ``project`` the local part after it. The split is what lets
    test-time conversions (``benchmark.evaluation.tlc.to_local``) run ``attend`` on local windows without knowing the
    architecture: they set ``windows`` to a callable ``windows(attend, maps) -> out`` that applies ``attend`` to
    windows of ``maps`` and reassembles them. ``None`` (the default, as trained) attends over the whole map.
    """

    windows: Callable[[Attend, Tensor], Tensor] | None = None

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def attend(self, maps: Tensor) -> Tensor:
        raise NotImplementedError

    def project(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        maps = self.features(x)
        out = self.attend(maps) if self.windows is None else self.windows(self.attend, maps)
        return self.project(out)
