"""Test-time Local Converter (TLC): global statistics at test time taken over a local window instead.

Chu et al., "Improving Image Restoration by Revisiting Global Information Aggregation", ECCV 2022
(megvii-research/TLC, ``basicsr/models/archs/local_arch.py`` @ 8e87983). A network trained on 256x256 crops but
tested on 1280x720 frames computes its global pooling (channel attention) and instance-norm statistics over a region
about 14x larger than it ever saw during training. TLC replaces those layers by local versions whose window is
``base_ratio`` times the feature size the layer saw at training resolution, which removes the train/test mismatch.

``to_local(model, train_size)`` returns a converted deep copy:
    * ``nn.AdaptiveAvgPool2d`` with output size 1 -> ``LocalAvgPool2d``;
    * ``nn.InstanceNorm2d`` (without running statistics) -> ``LocalInstanceNorm2d``, same parameter names.

Behaviour follows TLC's exact path (``fast_imp=False, auto_pad=True``):
    * window ``kernel = feat * base // train`` per axis, with ``base = int(train * base_ratio)`` and ``feat`` the
      layer's input size during one forward pass at ``train_size``;
    * stride-1 box means over ``min(kernel, H) x min(kernel, W)`` windows on the valid region, replicate-padded back
      to H x W, centred (left/top ``(W - w) // 2``, right/bottom ``(W - w + 1) // 2``). A feature map no larger than
      the window gets its global mean everywhere, so at or below the training size the model is unchanged.

Deviations from TLC:
    * kernel sizes are set eagerly in ``to_local`` (TLC sets them lazily on the first forward after conversion);
    * box means are separable running sums of the map minus an offset (``box_mean``) instead of TLC's 2-D integral
      image of the map itself, in the map's dtype as in TLC. Measured on a 720x1280 float32 map with values in
      [-0.5, 4.5] and a 384-px window, TLC's float32 integral image is off by up to 1.4e-6 and ours by 3.6e-7, and
      ours takes half the time (114 against 225 ms; both in ``python -m benchmark.bench tlc``);
    * the instance norm's statistics are computed in float64 (TLC: the input dtype): TLC's float32 ``E[x^2] - E[x]^2``
      is off by 6 % where std/mean = 0.1 (by 600 % at 0.01); in float64 it is exact to ~1e-12 relative. The cost is a
      transient float64 copy of the normalised half of the map (HINet's HIN blocks only);
    * the local variance is clamped at 0 before ``sqrt(var + eps)`` (rounding can make ``E[x^2] - E[x]^2`` negative);
    * TLC's MPRNet variant pads after the channel-attention convolutions (``auto_pad=False``); those are 1x1
      convolutions, ReLU and sigmoid, which commute with replicate padding, so padding inside the pool is identical.

Not converted (left as they are): adaptive pools with another output size; instance norms with running statistics
(at test time they use stored statistics, so nothing is aggregated over the image); functional calls such as
``F.adaptive_avg_pool2d`` or ``x.mean((2, 3))``; target layers the forward pass never reaches. The local layers output
(N, C, H, W) instead of (N, C, 1, 1), so a model must use the pooled map by broadcasting (as 1x1-conv channel
attention does), not by flattening it.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LocalAvgPool2d", "LocalInstanceNorm2d", "box_mean", "count_local_layers", "to_local"]


def box_mean(x: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Local mean over a sliding window, replicate-padded back to the input size (TLC's exact path, faster).

    The window is ``min(kh, H) x min(kw, W)``; its stride-1 means over the valid region come from separable running
    sums (a cumulative sum along the rows, differenced ``kw`` apart, then the same down the columns) of ``x`` minus a
    per-map offset, and the (H - kh' + 1) x (W - kw' + 1) result is replicate-padded, centred, to H x W. When the
    window covers the whole map, every output equals the global mean.

    Precision: the arithmetic runs in ``x``'s dtype (float32 for float32 maps; half types are promoted to float32).
    Subtracting the offset (the mean of every 8th pixel) keeps the running sums near the spread of ``x`` rather than
    its level, and summing rows before columns keeps them below ``W`` (then ``H x kw``) terms instead of TLC's
    ``H x W``: on a 720x1280 map with values in [-0.5, 4.5] and a 384-px window the error was 3.6e-7 against TLC's
    float32 integral image's 1.4e-6, at half its time (``python -m benchmark.bench tlc`` measures both).

    Args:
        x: (..., H, W) floating tensor, any leading dimensions (usually (N, C, H, W)).
        kernel_size: window (kh, kw), positive.

    Returns:
        Tensor of the shape of ``x``, in ``x``'s dtype (float32 for half-precision inputs).
    """
    *lead, h, w = x.shape
    kh, kw = min(kernel_size[0], h), min(kernel_size[1], w)
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    offset = work[..., ::8, ::8].mean(dim=(-2, -1), keepdim=True)
    rows = (work - offset).cumsum_(-1)
    # Window sums along the rows: s[j + kw - 1] - s[j - 1], with s[-1] = 0.
    sums = rows[..., kw - 1 :].clone()
    sums[..., 1:] -= rows[..., : w - kw]
    sums.cumsum_(-2)
    mean = sums[..., kh - 1 :, :].clone()
    mean[..., 1:, :] -= sums[..., : h - kh, :]
    mean.mul_(1.0 / (kh * kw)).add_(offset)
    vh, vw = mean.shape[-2:]
    if (vh, vw) == (h, w):
        return mean
    pad = ((w - vw) // 2, (w - vw + 1) // 2, (h - vh) // 2, (h - vh + 1) // 2)
    # Replicate padding takes a 4-D (N, C, H, W) tensor: fold the leading dimensions into C.
    padded = F.pad(mean.reshape(1, -1, vh, vw), pad, mode="replicate")
    return padded.reshape(*lead, h, w)


def _pair(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel_size must be positive, got {kernel_size}")
    return int(kh), int(kw)


class LocalAvgPool2d(nn.Module):
    """Local replacement for ``nn.AdaptiveAvgPool2d(1)``: the mean over a sliding window instead of the whole map.

    Input (N, C, H, W) -> output (N, C, H, W) (not (N, C, 1, 1)); each position holds the mean of the
    ``kernel_size`` window around it (``box_mean``). Equals global average pooling broadcast to H x W when
    H <= kh and W <= kw.

    Args:
        kernel_size: window (kh, kw), or one int for a square window.
    """

    def __init__(self, kernel_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> local means (N, C, H, W), in the dtype of ``x``."""
        return box_mean(x, self.kernel_size).to(x.dtype)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class LocalInstanceNorm2d(nn.Module):
    """Local replacement for ``nn.InstanceNorm2d``: per-position mean and variance over a sliding window.

    ``y = (x - E_w[x]) / sqrt(E_w[x^2] - E_w[x]^2 + eps) * weight + bias`` with ``E_w`` the local box mean
    (``box_mean``), computed in float64 and cast back. Equals ``nn.InstanceNorm2d`` (biased variance) when
    H <= kh and W <= kw. Parameters are named ``weight`` and ``bias`` like ``nn.InstanceNorm2d``, so its checkpoints
    load unchanged; there are no buffers (instance norms with running statistics are not converted).

    Args:
        num_features: number of channels C.
        kernel_size: window (kh, kw), or one int for a square window.
        eps: added to the variance.
        affine: whether to learn a per-channel scale and shift.
    """

    def __init__(
        self, num_features: int, kernel_size: int | tuple[int, int], *, eps: float = 1e-5, affine: bool = False
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.kernel_size = _pair(kernel_size)
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @classmethod
    def from_instance_norm(cls, norm: nn.InstanceNorm2d, kernel_size: tuple[int, int]) -> LocalInstanceNorm2d:
        """The local version of ``norm``, sharing its parameter tensors (so a converted copy holds no new ones)."""
        local = cls(norm.num_features, kernel_size, eps=norm.eps, affine=norm.affine)
        if norm.affine:
            local.weight, local.bias = norm.weight, norm.bias
        return local

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) or (C, H, W) -> normalised tensor of the same shape and dtype."""
        if x.dim() not in (3, 4) or (self.affine and x.shape[-3] != self.num_features):
            raise ValueError(
                f"expected (N, {self.num_features}, H, W) or ({self.num_features}, H, W), got {tuple(x.shape)}"
            )
        x64 = x.to(torch.float64)
        mean = box_mean(x64, self.kernel_size)
        # Rounding can leave E[x^2] - E[x]^2 slightly negative on flat regions; sqrt of a negative would give NaN.
        var = (box_mean(x64.square(), self.kernel_size) - mean.square()).clamp_min(0.0)
        # Centre in float64 too: a float32 mean of large values is off by half an ulp, which a small std magnifies.
        out = ((x64 - mean) * (var + self.eps).rsqrt()).to(x.dtype)
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, kernel_size={self.kernel_size}, eps={self.eps}, affine={self.affine}"


def _is_target(module: nn.Module) -> bool:
    """Whether TLC converts ``module``: global average pooling, or an instance norm using per-image statistics."""
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return all(s == 1 for s in size) if isinstance(size, tuple | list) else size == 1
    return isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats


def _dummy_input(model: nn.Module, train_size: tuple[int, int]) -> Tensor:
    """A (1, 3, H, W) input in [0, 1] on the model's device and dtype.

    A private generator leaves the global RNG untouched, so converting a model never shifts a seeded run.
    """
    ref = next(iter(model.parameters()), None)
    if ref is None:
        ref = next(iter(model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, *train_size, generator=gen).to(device=device, dtype=dtype)


def _feature_sizes(model: nn.Module, targets: list[nn.Module], train_size: tuple[int, int]) -> dict[int, tuple]:
    """Input (H, W) each target layer sees when ``model`` processes one ``train_size`` image, keyed by ``id``.

    The first call wins, as in TLC (whose kernel is fixed on the first forward); a layer called again at another size
    triggers a warning since a single window cannot fit both.
    """
    sizes: dict[int, tuple[int, int]] = {}
    mismatched: set[int] = set()

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        hw = tuple(x.shape[-2:])
        if sizes.setdefault(id(module), hw) != hw:
            mismatched.add(id(module))

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in targets]
    try:
        model.eval()
        with torch.no_grad():
            model(_dummy_input(model, train_size))
    finally:
        for handle in handles:
            handle.remove()
        # Restore module by module: a model may deliberately keep some submodules in another mode.
        for m, training in modes:
            m.training = training
    if mismatched:
        warnings.warn(
            f"{len(mismatched)} TLC layer(s) ran at several feature sizes in one forward pass; "
            "their window follows the first size seen",
            stacklevel=3,
        )
    return sizes


def to_local(model: nn.Module, train_size: tuple[int, int], base_ratio: float = 1.5) -> nn.Module:
    """Convert a restoration model to its TLC form; the given model is left untouched.

    Runs one forward pass (eval mode, no grad) of a deep copy on a (1, 3, *train_size) input to record the feature
    size (h, w) each global pooling / instance-norm layer sees, then swaps those layers for ``LocalAvgPool2d`` /
    ``LocalInstanceNorm2d`` with window ``(h * base_h // train_h, w * base_w // train_w)``, where
    ``base = (int(train_h * base_ratio), int(train_w * base_ratio))``. E.g. train_size (256, 256), ratio 1.5: a layer
    that saw 64 x 64 features gets a 96 x 96 window. The copy's train/eval modes are restored afterwards.

    Args:
        model: follows ``model(lq) -> restored`` on (N, 3, H, W) inputs in [0, 1].
        train_size: (H, W) of the training crops.
        base_ratio: window size relative to the training crop; 1.5 in TLC's experiments.

    Returns:
        The converted copy. State-dict keys are unchanged. A model with nothing to convert comes back as a plain copy;
        ``count_local_layers`` tells whether TLC changed anything.

    Raises:
        ValueError: ``train_size`` is not two positive ints or ``base_ratio`` is not positive.
    """
    if len(train_size) != 2 or any(int(s) != s or s < 1 for s in train_size):
        raise ValueError(f"train_size must be (H, W) with positive ints, got {train_size!r}")
    if not base_ratio > 0:
        raise ValueError(f"base_ratio must be positive, got {base_ratio!r}")
    train_h, train_w = int(train_size[0]), int(train_size[1])
    base_h, base_w = int(train_h * base_ratio), int(train_w * base_ratio)

    local = copy.deepcopy(model)
    targets = {id(m): m for m in local.modules() if _is_target(m)}
    if not targets:
        return local
    sizes = _feature_sizes(local, list(targets.values()), (train_h, train_w))

    replacements: dict[int, nn.Module] = {}
    for key, module in targets.items():
        if key not in sizes:
            continue
        h, w = sizes[key]
        # max(1, .): a ratio below 1 could otherwise give an empty window on a tiny map.
        kernel = (max(1, h * base_h // train_h), max(1, w * base_w // train_w))
        if isinstance(module, nn.InstanceNorm2d):
            replacements[key] = LocalInstanceNorm2d.from_instance_norm(module, kernel)
        else:
            replacements[key] = LocalAvgPool2d(kernel)
        replacements[key].train(module.training)  # a fresh module starts in training mode; keep the copy's mode
    unreached = len(targets) - len(replacements)
    if unreached:
        warnings.warn(
            f"{unreached} pooling/instance-norm layer(s) were not used by a forward pass at {train_size}; "
            "they stay global",
            stacklevel=2,
        )

    # Walk every parent's own registry (not named_children, which skips repeats): a module registered under several
    # names (weight sharing) is replaced under each of them, by one shared local module.
    for parent in list(local.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
    return local


def count_local_layers(model: nn.Module) -> int:
    """Number of distinct ``LocalAvgPool2d`` / ``LocalInstanceNorm2d`` modules in ``model`` (0: TLC changed nothing)."""
    return sum(isinstance(m, LocalAvgPool2d | LocalInstanceNorm2d) for m in model.modules())
