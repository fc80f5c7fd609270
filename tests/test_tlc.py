"""TLC: exact local box statistics, and ``to_local`` on toy and registered models."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.evaluation.tlc import (
    LocalAvgPool2d,
    LocalInstanceNorm2d,
    LocalMeanConv2d,
    box_mean,
    count_local_layers,
    to_local,
)
from benchmark.tools.tlc_release import as_release, box_mean_errors, integral_box_mean, wake_zero_parameters
from models import create_model, list_models


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _replicate_centred(valid: Tensor, h: int, w: int) -> Tensor:
    """Pad a valid map back to h x w by repeating edge rows/columns, centred as TLC does (by indexing, not F.pad)."""
    vh, vw = valid.shape[-2:]
    rows = (torch.arange(h) - (h - vh) // 2).clamp(0, vh - 1)
    cols = (torch.arange(w) - (w - vw) // 2).clamp(0, vw - 1)
    return valid[..., rows, :][..., cols]


def _window_stats_by_loops(x: Tensor, kernel: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of the window each output position uses, one position at a time (float64)."""
    h, w = x.shape[-2:]
    kh, kw = min(kernel[0], h), min(kernel[1], w)
    top, left = (h - (h - kh + 1)) // 2, (w - (w - kw + 1)) // 2
    mean = torch.empty(x.shape, dtype=torch.float64)
    var = torch.empty(x.shape, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            # Output (i, j) copies the valid window nearest to it: start index clamped to [0, H - kh].
            r, c = min(max(i - top, 0), h - kh), min(max(j - left, 0), w - kw)
            win = x[..., r : r + kh, c : c + kw].double().flatten(-2)
            mean[..., i, j] = win.mean(-1)
            var[..., i, j] = win.var(-1, unbiased=False)
    return mean, var


# Non-square maps with odd, even, unit, partial-cover and over-size windows.
CASES = [
    ((13, 17), (5, 7)),
    ((13, 17), (4, 6)),
    ((12, 9), (1, 1)),
    ((13, 17), (13, 3)),
    ((10, 11), (20, 5)),
    ((7, 16), (3, 100)),
]


@pytest.mark.parametrize(("hw", "kernel"), CASES)
def test_local_avg_pool_matches_direct_computation(hw: tuple[int, int], kernel: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw, generator=_generator())
    out = LocalAvgPool2d(kernel)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    k = (min(kernel[0], hw[0]), min(kernel[1], hw[1]))
    expected = _replicate_centred(F.avg_pool2d(x.double(), k, stride=1), *hw)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)  # float32 running sums of N(0, 1) values
    loop_mean, _ = _window_stats_by_loops(x, kernel)
    torch.testing.assert_close(box_mean(x.double(), kernel), loop_mean, atol=1e-12, rtol=0)


def test_box_mean_accepts_any_leading_dims_and_keeps_the_dtype() -> None:
    x = torch.rand(5, 9, 11, generator=_generator())
    out = box_mean(x, (4, 4))
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, box_mean(x[None], (4, 4))[0])
    assert box_mean(x.double(), (4, 4)).dtype == torch.float64
    assert box_mean(x.bfloat16(), (4, 4)).dtype == torch.float32  # half types are summed in float32


def test_float32_box_means_on_a_720x1280_map_are_within_1e_5_and_beat_tlcs_own() -> None:
    """A full-resolution map of a 1280x720 frame with a 384-px window (TLC's 1.5 x 256 at full resolution), against
    TLC's own float32 integral image (``benchmark.tools.tlc_release``, written from the release's text)."""
    errors = box_mean_errors((1, 4, 720, 1280), (384, 384))
    assert errors["ours"] < 1e-5 and errors["ours"] < errors["tlc"] / 2
    x = torch.rand(2, 3, 40, 50, generator=_generator(), dtype=torch.float64)
    # In float64 the release's operator and ours agree: the same windows, the same padding.
    torch.testing.assert_close(integral_box_mean(x, (9, 14)), box_mean(x, (9, 14)), atol=1e-13, rtol=0)


def test_box_means_in_cache_sized_steps_equal_the_whole_map_at_once() -> None:
    x = torch.rand(2, 7, 45, 61, generator=_generator()) * 5 - 0.5
    whole = box_mean(x, (20, 33), step_bytes=1 << 40)
    assert torch.equal(box_mean(x, (20, 33), step_bytes=1), whole)  # one plane per step
    assert torch.equal(box_mean(x, (20, 33), step_bytes=3 * 45 * 61 * 4), whole)  # 3 planes, a ragged last step


def test_the_release_layers_swap_in_with_the_same_windows() -> None:
    plain = wake_zero_parameters(create_model("nafnet_tiny").eval())  # zero layer scales would hide the attention
    model = to_local(plain, (32, 32))
    release = as_release(to_local(plain, (32, 32), fuse=False))
    assert count_local_layers(release) == 0 and count_local_layers(model) > 0
    lq = torch.rand(1, 3, 72, 88, generator=_generator())
    with torch.no_grad():
        out = model(lq)
        torch.testing.assert_close(release(lq), out, atol=1e-5, rtol=0)
        assert (out - plain(lq)).abs().max() > 1e-4  # beyond the training size TLC changes the output


@pytest.mark.parametrize(("hw", "kernel"), [((8, 8), (8, 8)), ((6, 10), (96, 96)), ((16, 5), (16, 7))])
def test_local_avg_pool_is_global_when_the_map_fits_the_window(hw: tuple[int, int], kernel: tuple[int, int]) -> None:
    x = torch.randn(2, 4, *hw, generator=_generator())
    expected = nn.AdaptiveAvgPool2d(1)(x).expand_as(x)
    torch.testing.assert_close(LocalAvgPool2d(kernel)(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize(("hw", "kernel"), [((8, 8), (8, 8)), ((6, 10), (96, 96))])
def test_local_instance_norm_equals_instance_norm_when_the_map_fits(
    hw: tuple[int, int], kernel: tuple[int, int], affine: bool
) -> None:
    ref = nn.InstanceNorm2d(4, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.copy_(torch.randn(4, generator=_generator(1)))
            ref.bias.copy_(torch.randn(4, generator=_generator(2)))
    local = LocalInstanceNorm2d.from_instance_norm(ref, kernel)
    x = torch.randn(2, 4, *hw, generator=_generator()) * 3 + 1
    torch.testing.assert_close(local(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(local(x[0]), ref(x[0]), atol=1e-5, rtol=1e-5)  # unbatched (C, H, W)


@pytest.mark.parametrize(("hw", "kernel"), CASES)
def test_local_instance_norm_matches_direct_computation(hw: tuple[int, int], kernel: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw, generator=_generator()) * 2 + 0.5
    weight, bias = torch.randn(3, generator=_generator(1)), torch.randn(3, generator=_generator(2))
    local = LocalInstanceNorm2d(3, kernel, eps=1e-5, affine=True)
    with torch.no_grad():
        local.weight.copy_(weight)
        local.bias.copy_(bias)
    mean, var = _window_stats_by_loops(x, kernel)
    expected = (x.double() - mean) / (var + 1e-5).sqrt() * weight.double()[:, None, None] + bias.double()[:, None, None]
    torch.testing.assert_close(local(x).double(), expected, atol=1e-5, rtol=1e-5)
    x64 = x.double()
    torch.testing.assert_close(local.double()(x64), expected, atol=1e-10, rtol=0)


def test_local_instance_norm_stays_accurate_with_a_large_mean() -> None:
    """E[x^2] - E[x]^2 cancels badly in float32 when std << mean; the float64 accumulation avoids it."""
    x = 100.0 + 0.01 * torch.randn(1, 2, 40, 40, generator=_generator())
    local = LocalInstanceNorm2d(2, (16, 16), eps=1e-12)
    mean, var = _window_stats_by_loops(x, (16, 16))
    expected = (x.double() - mean) / var.sqrt()
    # float32 input: only the final cast to float32 and the float32 input values themselves limit the accuracy.
    torch.testing.assert_close(local(x).double(), expected, atol=1e-4, rtol=0)


def test_local_modules_repr_shows_the_window() -> None:
    assert "kernel_size=(96, 96)" in repr(LocalAvgPool2d(96))
    assert "kernel_size=(24, 36)" in repr(LocalInstanceNorm2d(8, (24, 36), affine=True))
    with pytest.raises(ValueError, match="positive"):
        LocalAvgPool2d((0, 3))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation with 1x1 convolutions (RCAB/NAFNet style): the pooled map is broadcast, not flattened."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(self.pool(x))


class HalfInstanceNorm(nn.Module):
    """HINet's HIN: affine instance norm on the first half of the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels // 2, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([self.norm(a), b], dim=1)


class Toy(nn.Module):
    """Two stride-2 levels; instance norm at 1/2 scale, channel attention at 1/4 scale, plus a layer TLC must skip."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.down1 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.hin = HalfInstanceNorm(8)
        self.down2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.ca = ChannelAttention(8)
        self.grid = nn.AdaptiveAvgPool2d(2)  # not a global pool: stays
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, lq: Tensor) -> Tensor:
        f = self.ca(self.down2(self.hin(self.down1(self.head(lq)))))
        f = f + F.interpolate(self.grid(f), size=f.shape[-2:], mode="nearest")
        return lq + F.interpolate(self.tail(f), size=lq.shape[-2:], mode="bilinear", align_corners=False)


def _toy() -> Toy:
    torch.manual_seed(0)
    model = Toy()
    with torch.no_grad():  # non-trivial affine parameters, so a lost weight/bias would show
        model.hin.norm.weight.uniform_(0.5, 1.5)
        model.hin.norm.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_to_local_replaces_exactly_the_global_layers_with_train_size_windows() -> None:
    model = _toy()
    local = to_local(model, train_size=(256, 256), base_ratio=1.5)
    assert isinstance(local.ca.pool, LocalAvgPool2d)
    assert local.ca.pool.kernel_size == (96, 96)  # saw 64 x 64 features: 64 * 384 // 256
    assert isinstance(local.hin.norm, LocalInstanceNorm2d)
    assert local.hin.norm.kernel_size == (192, 192)  # saw 128 x 128 features
    assert type(local.grid) is nn.AdaptiveAvgPool2d
    assert count_local_layers(local) == 2 and count_local_layers(model) == 0
    # Everything else is the same module type.
    for (name, m), (_, m_local) in zip(model.named_modules(), local.named_modules(), strict=True):
        if name not in {"ca.pool", "hin.norm"}:
            assert type(m) is type(m_local), name


def test_to_local_non_square_train_size_and_ratio() -> None:
    local = to_local(_toy(), train_size=(64, 96), base_ratio=2.0)
    assert local.ca.pool.kernel_size == (32, 48)  # 16 x 24 features, base (128, 192)
    assert local.hin.norm.kernel_size == (64, 96)
    local = to_local(_toy(), train_size=(60, 60), base_ratio=1.25)
    assert local.ca.pool.kernel_size == (15 * 75 // 60,) * 2  # TLC's floor rule: 18


def test_to_local_leaves_the_original_untouched_and_keeps_state_dict_keys() -> None:
    model = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.get_rng_state()
    local = to_local(model, train_size=(64, 64))
    assert torch.equal(torch.get_rng_state(), rng_state)  # the dummy input does not consume the global RNG
    assert type(model.ca.pool) is nn.AdaptiveAvgPool2d and type(model.hin.norm) is nn.InstanceNorm2d
    assert list(local.state_dict()) == list(before)
    for key, value in local.state_dict().items():
        assert torch.equal(value, before[key]), key
    # A deep copy: changing the converted model's weights leaves the original alone.
    with torch.no_grad():
        local.hin.norm.weight.add_(1.0)
    assert torch.equal(model.hin.norm.weight, before["hin.norm.weight"])
    assert model.load_state_dict(local.state_dict()) is not None and local.load_state_dict(before) is not None


@pytest.mark.parametrize("hw", [(64, 64), (96, 96), (40, 96), (96, 72), (33, 50)])
def test_to_local_matches_the_original_up_to_the_window(hw: tuple[int, int]) -> None:
    model = _toy()
    local = to_local(model, train_size=(64, 64))  # windows: 24 at 1/4 scale, 48 at 1/2 scale, i.e. 96 px of input
    lq = torch.rand(2, 3, *hw, generator=_generator())
    with torch.no_grad():
        torch.testing.assert_close(local(lq), model(lq), atol=1e-6, rtol=0)


@pytest.mark.parametrize("hw", [(128, 128), (64, 160)])
def test_to_local_differs_beyond_the_window(hw: tuple[int, int]) -> None:
    model = _toy()
    local = to_local(model, train_size=(64, 64))
    lq = torch.rand(1, 3, *hw, generator=_generator())
    with torch.no_grad():
        pred, ref = local(lq), model(lq)
    assert pred.shape == ref.shape
    assert (pred - ref).abs().max().item() > 1e-4


def test_to_local_restores_train_eval_modes() -> None:
    model = _toy().train()
    model.hin.eval()  # a deliberately mixed state must survive too
    local = to_local(model, train_size=(32, 32))
    assert local.training and local.head.training and local.ca.training
    assert not local.hin.training
    assert [m.training for m in model.modules()] == [m.training for m in local.modules()]


def test_shared_modules_are_replaced_under_every_name() -> None:
    pool = nn.AdaptiveAvgPool2d((1, 1))
    model = nn.Sequential(nn.Conv2d(3, 3, 1), ChannelAttention(3), nn.Conv2d(3, 3, 1))
    model[1].pool = pool
    model.add_module("alias", pool)  # same module registered twice, used once
    local = to_local(model, train_size=(16, 16))
    assert local[1].pool is local.alias and isinstance(local.alias, LocalAvgPool2d)
    assert count_local_layers(local) == 1


def test_a_model_with_nothing_to_convert_comes_back_as_an_equivalent_copy() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d((8, 8)), nn.Conv2d(4, 3, 1)
    ).eval()
    model.add_module("tracked", nn.InstanceNorm2d(3, track_running_stats=True))  # uses stored statistics: stays
    local = to_local(model, train_size=(32, 32))
    assert local is not model and count_local_layers(local) == 0
    assert [type(m) for m in local.modules()] == [type(m) for m in model.modules()]
    assert all(p is not q for p, q in zip(local.parameters(), model.parameters(), strict=True))
    lq = torch.rand(1, 3, 20, 28, generator=_generator())
    with torch.no_grad():
        assert torch.equal(local(lq), model(lq))


def test_layers_the_forward_never_reaches_stay_global_with_a_warning() -> None:
    model = _toy()
    model.gt_branch = ChannelAttention(8)  # e.g. a ground-truth encoder used only in training
    with pytest.warns(UserWarning, match="1 pooling/instance-norm layer"):
        local = to_local(model, train_size=(32, 32))
    assert type(local.gt_branch.pool) is nn.AdaptiveAvgPool2d and count_local_layers(local) == 2


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="train_size"):
        to_local(_toy(), train_size=(64,))
    with pytest.raises(ValueError, match="train_size"):
        to_local(_toy(), train_size=(0, 64))
    with pytest.raises(ValueError, match="base_ratio"):
        to_local(_toy(), train_size=(64, 64), base_ratio=0.0)


def _registry_params() -> list:
    """Every registered model; full-size ones are marked slow (tens of seconds each on a 2-core CPU)."""
    fast = {"identity"}
    return [
        pytest.param(name, marks=() if name in fast or name.endswith("_tiny") else pytest.mark.slow)
        for name in list_models()
    ]


@pytest.mark.parametrize("name", _registry_params())
def test_to_local_on_every_registered_model(name: str) -> None:
    model = create_model(name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GT-only branches may stay global; that is reported, not an error here
        local = to_local(model, train_size=(64, 64))
    assert list(local.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        lq = torch.rand(1, 3, 64, 64, generator=_generator())
        torch.testing.assert_close(local(lq), model(lq), atol=1e-5, rtol=0)  # at train size TLC changes nothing
        lq = torch.rand(1, 3, 72, 100, generator=_generator())
        assert local(lq).shape == lq.shape


class SqueezeAttention(nn.Module):
    """RCAN/MPRNet channel attention: pool, 1x1 squeeze C -> C/4, ReLU, 1x1 excite, sigmoid; ``extra`` also reads
    the pooled map (then the pool must stay a pool)."""

    def __init__(self, channels: int, extra: bool = False) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // 4, 1), nn.ReLU(inplace=True), nn.Conv2d(channels // 4, channels, 1)
        )
        self.extra = extra

    def forward(self, x: Tensor) -> Tensor:
        y = self.avg_pool(x)
        out = x * torch.sigmoid(self.conv_du(y))
        return out + y if self.extra else out


class Patches(nn.Module):
    """A head, then one attention block run on the left and right halves separately (MPRNet's stage-1 patches)."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.ca = SqueezeAttention(8, extra)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, lq: Tensor) -> Tensor:
        f = self.head(lq)
        left, right = f.chunk(2, dim=-1)
        return lq + self.tail(torch.cat([self.ca(left), self.ca(right)], dim=-1))


def _patches(extra: bool = False) -> Patches:
    torch.manual_seed(0)
    return Patches(extra).double().eval()


def test_a_pool_read_only_by_a_narrowing_1x1_conv_is_fused_into_it() -> None:
    model = _patches()
    fused, unfused = to_local(model, (16, 32)), to_local(model, (16, 32), fuse=False)
    assert type(fused.ca.avg_pool) is nn.Identity and isinstance(fused.ca.conv_du[0], LocalMeanConv2d)
    assert fused.ca.conv_du[0].kernel_size == (24, 24)  # each half saw 16 x 16 features: 16 * 24 // 16
    assert torch.equal(fused.ca.conv_du[0].weight, model.ca.conv_du[0].weight)
    assert type(fused.ca.conv_du[2]) is nn.Conv2d
    assert isinstance(unfused.ca.avg_pool, LocalAvgPool2d) and type(unfused.ca.conv_du[0]) is nn.Conv2d
    assert count_local_layers(fused) == count_local_layers(unfused) == 1
    assert list(fused.state_dict()) == list(model.state_dict())
    lq = torch.rand(1, 3, 70, 150, generator=_generator(), dtype=torch.float64)
    with torch.no_grad():
        out = fused(lq)
        # The same function in float64 (only the order of the sums differs), and a local one: not the global model.
        torch.testing.assert_close(out, unfused(lq), atol=1e-12, rtol=0)
        assert (out - model(lq)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="fuse=False"):
        as_release(fused)


def test_a_pool_read_elsewhere_or_followed_by_a_non_narrowing_conv_stays_a_pool() -> None:
    local = to_local(_patches(extra=True), (16, 32))  # the pooled map is also added to the output
    assert isinstance(local.ca.avg_pool, LocalAvgPool2d) and type(local.ca.conv_du[0]) is nn.Conv2d
    local = to_local(_toy(), (32, 32))  # C -> C convolution: fusing saves nothing
    assert isinstance(local.ca.pool, LocalAvgPool2d)
    with pytest.raises(ValueError, match="1x1"):
        LocalMeanConv2d(nn.Conv2d(8, 2, 3, padding=1), (4, 4))


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith("_tiny")])
def test_fused_and_unfused_tlc_agree_on_every_tiny_model(name: str) -> None:
    torch.manual_seed(0)
    model = wake_zero_parameters(create_model(name).eval()).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused, unfused = to_local(model, (32, 32)), to_local(model, (32, 32), fuse=False)
    assert count_local_layers(fused) == count_local_layers(unfused)
    pooled = [m for m in unfused.modules() if isinstance(m, LocalAvgPool2d)]
    merged = [m for m in fused.modules() if isinstance(m, LocalMeanConv2d)]
    # Every RCAN-style attention (MPRNet r = 4, MSFS-Net r = 16) is fused; NAFNet's C -> C attention is not.
    expected = {"mprnet_tiny": len(pooled), "msfsnet_tiny": len(pooled)}.get(name, 0)
    assert len(merged) == expected
    lq = torch.rand(1, 3, 96, 80, generator=_generator(), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(lq), unfused(lq), atol=1e-12, rtol=0)
