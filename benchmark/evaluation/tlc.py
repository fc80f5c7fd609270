"""Test-time Local Converter (TLC): global statistics at test time taken over a local window instead.

Chu et al., "Improving Image Restoration by Revisiting Global Information Aggregation", ECCV 2022
(megvii-research/TLC, ``basicsr/models/archs/local_arch.py`` @ 8e87983). A network trained on 256x256 crops but
tested on 1280x720 frames computes its global pooling (channel attention) and instance-norm statistics over a region
about 14x larger than it ever saw during training. TLC replaces those layers by local versions whose window is
``base_ratio`` times the feature size the layer saw at training resolution, which removes the train/test mismatch.

``to_local(model, train_size)`` returns a converted deep copy:
    * ``nn.AdaptiveAvgPool2d`` with output size 1 -> ``LocalAvgPool2d`` (or fused, below, into ``LocalMeanConv2d``);
    * ``nn.InstanceNorm2d`` (without running statistics) -> ``LocalInstanceNorm2d``, same parameter names;
    * attention over the whole map (``models.base.GlobalAttention``, Restormer's transposed attention) keeps its
      module and gets ``windows = LocalWindows(kernel)``: its attention then runs on TLC's overlapping windows,
      averaged where they overlap (TLC's ``LocalAttention``, Restormer-Local).

Behaviour follows TLC's exact path (``fast_imp=False, auto_pad=True``):
    * window ``kernel = feat * base // train`` per axis, with ``base = int(train * base_ratio)`` and ``feat`` the
      layer's input size during one forward pass at ``train_size``;
    * stride-1 box means over ``min(kernel, H) x min(kernel, W)`` windows on the valid region, replicate-padded back
      to H x W, centred (left/top ``(W - w) // 2``, right/bottom ``(W - w + 1) // 2``). A feature map no larger than
      the window gets its global mean everywhere, so at or below the training size the model is unchanged.

Deviations from TLC:
    * kernel sizes are set eagerly in ``to_local`` (TLC sets them lazily on the first forward after conversion);
    * box means are separable running sums of the map minus an offset (``box_mean``) instead of TLC's 2-D integral
      image of the map itself, in the map's dtype as in TLC, taken a few planes at a time on the CPU so that every
      pass stays in cache. ``python -m benchmark.bench speed`` measures both on one 720x1280 map with a 384-px window
      (error against float64 and time; ``results/bench/speed-*.md``); ours is the more accurate and the faster;
    * a pool whose output only a narrowing 1x1 convolution reads (RCAN-style channel attention: MPRNet, MSFS-Net) is
      fused into it (``LocalMeanConv2d``, ``to_local(..., fuse=True)``, the default): the box mean is taken after
      the convolution, over C/r channels instead of C. The two orders are the same function (float64: within 1e-12
      in the tests); only the rounding of the sums differs;
    * the instance norm's statistics are computed in float64 (TLC: the input dtype): TLC's float32 ``E[x^2] - E[x]^2``
      is off by 6 % where std/mean = 0.1 (by 600 % at 0.01); in float64 it is exact to ~1e-12 relative. The cost is a
      transient float64 copy of a few planes at a time (HINet's HIN blocks only);
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
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import is_

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from models.base import Attend, GlobalAttention

__all__ = [
    "LocalAvgPool2d",
    "LocalInstanceNorm2d",
    "LocalMeanConv2d",
    "LocalWindows",
    "box_mean",
    "count_local_layers",
    "to_local",
    "window_starts",
]


_STEP_BYTES = 4 << 20
"""Input bytes per ``box_mean`` step on the CPU (at least one plane; see :func:`_planes_per_step`)."""


def box_mean(x: Tensor, kernel_size: tuple[int, int], *, step_bytes: int = _STEP_BYTES) -> Tensor:
    """Local mean over a sliding window, replicate-padded back to the input size (TLC's exact path, faster).

    The window is ``min(kh, H) x min(kw, W)``; its stride-1 means over the valid region come from separable running
    sums (a cumulative sum along the rows, differenced ``kw`` apart, then the same down the columns) of ``x`` minus a
    per-plane offset, and the (H - kh' + 1) x (W - kw' + 1) result is replicate-padded, centred, to H x W. When the
    window covers the whole map, every output equals the global mean. On the CPU the planes are processed a few at a
    time so that each step's passes stay in cache (:func:`_planes_per_step`).

    Precision: the arithmetic runs in ``x``'s dtype (float32 for float32 maps; half types are promoted to float32).
    Subtracting the offset (the mean of every 8th pixel) keeps the running sums near the spread of ``x`` rather than
    its level, and summing rows before columns keeps them below ``W`` (then ``H x kw``) terms instead of TLC's
    ``H x W``. ``python -m benchmark.bench speed`` measures the error and the time of both on one 720x1280 map with a
    384-px window (``results/bench/speed-*.md``).

    Args:
        x: (..., H, W) floating tensor, any leading dimensions (usually (N, C, H, W)).
        kernel_size: window (kh, kw), positive.
        step_bytes: input bytes per step on the CPU (at least one plane); the default keeps a step in cache.

    Returns:
        Tensor of the shape of ``x``, in ``x``'s dtype (float32 for half-precision inputs).
    """
    *lead, h, w = x.shape
    kh, kw = min(kernel_size[0], h), min(kernel_size[1], w)
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    planes = work.reshape(-1, h, w)
    out = torch.empty(planes.shape, dtype=planes.dtype, device=planes.device)
    step = _planes_per_step(planes.shape, planes.element_size(), planes.device, step_bytes)
    rows = planes.new_empty((step, h, w))
    sums = planes.new_empty((step, h, w - kw + 1))
    for start in range(0, planes.shape[0], step):
        stop = min(start + step, planes.shape[0])
        _valid_box_mean_(out[start:stop], planes[start:stop], (kh, kw), rows[: stop - start], sums[: stop - start])
    _replicate_border_(out, (h - kh + 1, w - kw + 1))
    return out.reshape(*lead, h, w)


def _planes_per_step(shape: torch.Size, element_size: int, device: torch.device, step_bytes: int) -> int:
    """How many planes of a (P, H, W) stack to process at once.

    On the CPU, as many as fill ``step_bytes`` (at least one): the step's input, its two scratch planes and its slice
    of the output then stay in the last-level cache across the five passes, instead of every pass streaming the whole
    map through memory (``bench speed`` times the whole-map and the stepped versions). Elsewhere all planes at once:
    a GPU's memory keeps up, and more steps would only add kernel launches.
    """
    count = max(shape[0], 1)
    if device.type != "cpu":
        return count
    plane_bytes = max(1, shape[-2] * shape[-1] * element_size)
    return max(1, min(count, step_bytes // plane_bytes))


def _valid_box_mean_(out: Tensor, src: Tensor, kernel: tuple[int, int], rows: Tensor, sums: Tensor) -> None:
    """Write the stride-1 window means of (m, H, W) ``src`` into the centred valid region of ``out`` (same shape).

    ``kernel`` fits the plane; ``rows`` (m, H, W) and ``sums`` (m, H, W - kw + 1) are scratch.
    """
    (kh, kw), (h, w) = kernel, src.shape[-2:]
    vh, vw = h - kh + 1, w - kw + 1
    offset = src[:, ::8, ::8].mean(dim=(-2, -1), keepdim=True)
    torch.sub(src, offset, out=rows).cumsum_(-1)
    # Window sums along the rows: s[j + kw - 1] - s[j - 1], with s[-1] = 0.
    sums[..., 0] = rows[..., kw - 1]
    torch.sub(rows[..., kw:], rows[..., : w - kw], out=sums[..., 1:])
    sums.cumsum_(-2)
    top, left = (h - vh) // 2, (w - vw) // 2
    valid = out[:, top : top + vh, left : left + vw]
    valid[:, 0] = sums[:, kh - 1]
    torch.sub(sums[:, kh:], sums[:, : h - kh], out=valid[:, 1:])
    valid.mul_(1.0 / (kh * kw)).add_(offset)


def _replicate_border_(out: Tensor, valid: tuple[int, int]) -> None:
    """Fill (P, H, W) ``out`` around its centred ``valid`` (vh, vw) region by repeating the region's edge columns,
    then its edge rows: TLC's replicate padding, left/top ``(W - vw) // 2``, right/bottom ``(W - vw + 1) // 2``."""
    (h, w), (vh, vw) = out.shape[-2:], valid
    top, left = (h - vh) // 2, (w - vw) // 2
    band = out[:, top : top + vh]
    if vw < w:
        band[..., :left] = band[..., left : left + 1]
        band[..., left + vw :] = band[..., left + vw - 1 : left + vw]
    if vh < h:
        out[:, :top] = out[:, top : top + 1]
        out[:, top + vh :] = out[:, top + vh - 1 : top + vh]


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
        planes = x.reshape(-1, *x.shape[-2:])
        out = torch.empty_like(planes)
        # Plane by plane (a few at a time), so the float64 copies and statistics stay small and in cache.
        step = _planes_per_step(planes.shape, 8, planes.device, _STEP_BYTES)
        for start in range(0, planes.shape[0], step):
            x64 = planes[start : start + step].to(torch.float64, copy=True)
            mean = box_mean(x64, self.kernel_size)
            # Rounding can leave E[x^2] - E[x]^2 slightly negative on flat regions; sqrt of a negative would give NaN.
            var = box_mean(x64.square(), self.kernel_size).sub_(mean.square()).clamp_min_(0.0)
            # Centre in float64 too: a float32 mean of large values is off by half an ulp, which a small std magnifies.
            out[start : start + step] = x64.sub_(mean).mul_(var.add_(self.eps).rsqrt_())
        out = out.reshape(x.shape)
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, kernel_size={self.kernel_size}, eps={self.eps}, affine={self.affine}"


class LocalMeanConv2d(nn.Module):
    """A TLC local average pool fused with the 1x1 convolution that reads it: ``box_mean(conv(x))``.

    Equals ``conv(LocalAvgPool2d(kernel_size)(x))`` in exact arithmetic: a 1x1 convolution is the same affine map at
    every pixel, and the box mean (replicate padding included) a per-channel weighted average with weights summing to
    one, so the two commute, the bias included. When the convolution narrows the channels (RCAN-style channel
    attention squeezes C to C/r, r = 4 in MPRNet, 16 in MSFS-Net) the box mean then runs over r times fewer channels.
    The convolution itself costs the same in both orders, since after a local pool it runs at full resolution anyway.

    Parameters are the convolution's own tensors under its own names (``weight``, ``bias``), so the converted model's
    state-dict keys are unchanged; the pool's slot becomes an ``nn.Identity``.

    Args:
        conv: a 1x1, stride-1, unpadded ``nn.Conv2d``.
        kernel_size: the pool's window (kh, kw).
    """

    def __init__(self, conv: nn.Conv2d, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        if not _is_pointwise(conv):
            raise ValueError(f"expected a 1x1, stride-1, unpadded nn.Conv2d, got {conv}")
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size = _pair(kernel_size)
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W), in the dtype of ``x``."""
        y = F.conv2d(x, self.weight, self.bias, groups=self.groups)
        return box_mean(y, self.kernel_size).to(y.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, groups={self.groups}"


def window_starts(size: int, kernel: int) -> list[int]:
    """Start offsets of TLC's overlapping windows along one axis of ``size`` pixels (``LocalAttention.grids``).

    The window is ``k = min(kernel, size)``; ``n = ceil(size / k)`` windows, spaced ``ceil((size - k) / (n - 1))``
    apart, the last one flush with the end. E.g. 720 px, 384-px window: [0, 336]; 1280 px: [0, 299, 598, 896].
    """
    k = min(kernel, size)
    count = (size - 1) // k + 1
    step = k if count == 1 else math.ceil((size - k) / (count - 1) - 1e-8)
    starts, i, last = [], 0, False
    while i < size and not last:
        if i + k >= size:
            i, last = size - k, True
        starts.append(i)
        i += step
    return starts


@dataclass(frozen=True)
class LocalWindows:
    """TLC's local attention (``LocalAttention`` in megvii-research/TLC@8e87983 ``restormer_arch.py``, exact path):
    a ``GlobalAttention``'s ``attend`` run on overlapping ``kernel_size`` windows of its maps instead of the whole map,
    the windows' outputs summed back in place and divided by how many windows cover each pixel.

    Set as ``GlobalAttention.windows`` by ``to_local``. A map no larger than the window is one window: the attention
    is then the global one, bit for bit. TLC handles one image at a time (``assert b == 1``); here every image of the
    batch is cut into the same windows and all windows attend in one call.
    """

    kernel_size: tuple[int, int]

    def __call__(self, attend: Attend, maps: Tensor) -> Tensor:
        """``attend`` on windows of (N, C, H, W) ``maps`` -> (N, C', H, W) in ``attend``'s dtype."""
        n, _, h, w = maps.shape
        kh, kw = min(self.kernel_size[0], h), min(self.kernel_size[1], w)
        if (kh, kw) == (h, w):
            return attend(maps)
        corners = [(i, j) for i in window_starts(h, kh) for j in window_starts(w, kw)]
        # Window-major order, image-minor: window t of image b is row t * n + b.
        outs = attend(torch.cat([maps[:, :, i : i + kh, j : j + kw] for i, j in corners]))
        merged = outs.new_zeros((n, outs.shape[1], h, w))
        count = outs.new_zeros((1, 1, h, w))
        for t, (i, j) in enumerate(corners):  # TLC's order of accumulation
            merged[:, :, i : i + kh, j : j + kw] += outs[t * n : (t + 1) * n]
            count[:, :, i : i + kh, j : j + kw] += 1.0
        return merged / count


def _is_pointwise(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain per-pixel affine map: an ``nn.Conv2d`` (not a subclass) that is 1x1, stride 1,
    unpadded."""
    return (
        type(conv) is nn.Conv2d
        and tuple(conv.kernel_size) == (1, 1)
        and tuple(conv.stride) == (1, 1)
        and conv.padding in ((0, 0), "valid")
    )


def _is_target(module: nn.Module) -> bool:
    """Whether TLC converts ``module``: global average pooling, an instance norm using per-image statistics, or
    attention over the whole map (``models.base.GlobalAttention``)."""
    if isinstance(module, GlobalAttention):
        return True
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


def _tensors(obj: object) -> Iterator[Tensor]:
    """The tensors in nested tuples, lists and dict values (a torch function's ``args`` and ``kwargs``)."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class _ValueReads(TorchFunctionMode):
    """Records, for each watched tensor, the names of the torch functions that read its values during a forward pass
    (shape and dtype queries excluded): whether a pool's output goes to one convolution and nowhere else."""

    _METADATA = frozenset({"__get__", "dim", "size", "numel", "stride", "is_contiguous", "is_floating_point"})

    def __init__(self) -> None:
        super().__init__()
        self._reads: dict[int, tuple[Tensor, list[str]]] = {}

    def watch(self, tensor: Tensor) -> None:
        self._reads[id(tensor)] = (tensor, [])  # holding the tensor keeps its id from being reused

    def reads(self, tensor: Tensor) -> list[str]:
        return self._reads[id(tensor)][1]

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", repr(func))
        if self._reads and name not in self._METADATA:
            for tensor in _tensors((args, kwargs)):
                entry = self._reads.get(id(tensor))
                if entry is not None and entry[0] is tensor:
                    entry[1].append(name)
        return func(*args, **kwargs)


@dataclass
class _Trace:
    """What one forward pass at the training size showed: each target's input (H, W), keyed by ``id``, and for each
    global pool whose output only a narrowing 1x1 convolution reads, that convolution (``LocalMeanConv2d``)."""

    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    fusable: dict[int, nn.Conv2d] = field(default_factory=dict)


def _trace(model: nn.Module, targets: list[nn.Module], train_size: tuple[int, int]) -> _Trace:
    """Run ``model`` once on a ``train_size`` image (eval mode, no grad; modes restored) and record :class:`_Trace`.

    The first call's size wins, as in TLC (whose kernel is fixed on the first forward); a layer called again at
    another size triggers a warning since a single window cannot fit both.
    """
    trace, mismatched = _Trace(), set()
    outputs: dict[int, list[Tensor]] = {id(m): [] for m in targets}
    inputs: dict[int, list[Tensor]] = {}
    convs = {id(m): m for m in model.modules() if _is_pointwise(m) and m.out_channels < m.in_channels}
    reads = _ValueReads()

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hw = tuple(_first_input(args, kwargs).shape[-2:])
        if trace.sizes.setdefault(id(module), hw) != hw:
            mismatched.add(id(module))

    def keep_output(module: nn.Module, args: tuple, output: Tensor) -> None:
        outputs[id(module)].append(output)
        reads.watch(output)

    def keep_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs.setdefault(id(module), []).append(_first_input(args, kwargs))

    hooks = [m.register_forward_pre_hook(record, with_kwargs=True) for m in targets]
    hooks += [m.register_forward_hook(keep_output) for m in targets if isinstance(m, nn.AdaptiveAvgPool2d)]
    hooks += [m.register_forward_pre_hook(keep_input, with_kwargs=True) for m in convs.values()]
    _run_once(model, train_size, hooks, reads)
    for key, outs in outputs.items():
        # One convolution takes every output of the pool (a block may run on several patches), and nothing else
        # does: each output is read once, by conv2d, and the convolution runs on nothing but these outputs.
        readers = [c for c, ins in inputs.items() if outs and len(ins) == len(outs) and all(map(is_, ins, outs))]
        if len(readers) == 1 and all(reads.reads(out) == ["conv2d"] for out in outs):
            trace.fusable[key] = convs[readers[0]]
    if mismatched:
        warnings.warn(
            f"{len(mismatched)} TLC layer(s) ran at several feature sizes in one forward pass; "
            "their window follows the first size seen",
            stacklevel=3,
        )
    return trace


def _first_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else next(iter(kwargs.values()))


def _run_once(model: nn.Module, train_size: tuple[int, int], hooks: list, reads: _ValueReads) -> None:
    """One eval-mode, no-grad forward of a ``train_size`` dummy input under ``reads``; removes ``hooks`` and restores
    every module's train/eval mode afterwards, whatever happens."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        lq = _dummy_input(model, train_size)
        with torch.no_grad(), reads:
            model(lq)
    finally:
        for handle in hooks:
            handle.remove()
        # Restore module by module: a model may deliberately keep some submodules in another mode.
        for m, training in modes:
            m.training = training


def to_local(model: nn.Module, train_size: tuple[int, int], base_ratio: float = 1.5, *, fuse: bool = True) -> nn.Module:
    """Convert a restoration model to its TLC form; the given model is left untouched.

    Runs one forward pass (eval mode, no grad) of a deep copy on a (1, 3, *train_size) input to record the feature
    size (h, w) each global pooling / instance-norm layer sees, then swaps those layers for ``LocalAvgPool2d`` /
    ``LocalInstanceNorm2d`` with window ``(h * base_h // train_h, w * base_w // train_w)``, where
    ``base = (int(train_h * base_ratio), int(train_w * base_ratio))``. E.g. train_size (256, 256), ratio 1.5: a layer
    that saw 64 x 64 features gets a 96 x 96 window. The copy's train/eval modes are restored afterwards.

    With ``fuse``, a pool whose output is read by one 1x1 convolution that narrows the channels, and by nothing else,
    becomes an ``nn.Identity`` and that convolution a ``LocalMeanConv2d`` (the same function, the box mean taken after
    the convolution, over fewer channels); ``fuse=False`` keeps TLC's layer-for-layer form.

    Args:
        model: follows ``model(lq) -> restored`` on (N, 3, H, W) inputs in [0, 1].
        train_size: (H, W) of the training crops.
        base_ratio: window size relative to the training crop; 1.5 in TLC's experiments.
        fuse: fuse pools with the narrowing 1x1 convolutions that read them.

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
    train = (int(train_size[0]), int(train_size[1]))
    local = copy.deepcopy(model)
    targets = {id(m): m for m in local.modules() if _is_target(m)}
    if not targets:
        return local
    trace = _trace(local, list(targets.values()), train)
    if not fuse:
        trace.fusable.clear()
    replacements = _replacements(targets, trace, train, base_ratio)
    unreached = len(targets) - len(trace.sizes)
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


def _replacements(
    targets: dict[int, nn.Module], trace: _Trace, train: tuple[int, int], base_ratio: float
) -> dict[int, nn.Module]:
    """The local module for each reached target (and each fused convolution), keyed by the replaced module's ``id``."""
    base = (int(train[0] * base_ratio), int(train[1] * base_ratio))
    out: dict[int, nn.Module] = {}
    for key, module in targets.items():
        if key not in trace.sizes:
            continue
        h, w = trace.sizes[key]
        # max(1, .): a ratio below 1 could otherwise give an empty window on a tiny map.
        kernel = (max(1, h * base[0] // train[0]), max(1, w * base[1] // train[1]))
        if isinstance(module, GlobalAttention):
            module.windows = LocalWindows(kernel)  # the module stays; its attend now runs on windows
            out[key] = module
            continue
        if isinstance(module, nn.InstanceNorm2d):
            out[key] = LocalInstanceNorm2d.from_instance_norm(module, kernel)
        elif key in trace.fusable:
            conv = trace.fusable[key]
            out[key] = nn.Identity()
            out[id(conv)] = LocalMeanConv2d(conv, kernel).train(conv.training)
        else:
            out[key] = LocalAvgPool2d(kernel)
        out[key].train(module.training)  # a fresh module starts in training mode; keep the copy's mode
    return out


def count_local_layers(model: nn.Module) -> int:
    """Number of distinct local modules (``LocalAvgPool2d``, ``LocalInstanceNorm2d``, ``LocalMeanConv2d``, and
    ``GlobalAttention`` with ``LocalWindows``) in ``model`` (0: TLC changed nothing)."""
    return sum(
        isinstance(m, LocalAvgPool2d | LocalInstanceNorm2d | LocalMeanConv2d)
        or (isinstance(m, GlobalAttention) and m.windows is not None)
        for m in model.modules()
    )
