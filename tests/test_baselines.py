"""NAFNet, HINet, MPRNet: release-exact parameters and state-dict layouts, the loss recipes, TLC, golden outputs.

The ``_*_layout`` generators below are written from the release architectures, not from our models:
    * NAFNet: ``basicsr/models/archs/NAFNet_arch.py`` (+ ``arch_util.py``) at megvii-research/NAFNet@2b4af71;
    * HINet: ``basicsr/models/archs/hinet_arch.py`` at megvii-model/HINet@4e72315;
    * MPRNet: ``Deblurring/MPRNet.py`` at swz30/MPRNet@43feb2a.
A module's own parameters come first in its state dict, then its children in registration order.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.evaluation.tlc import LocalAvgPool2d, LocalInstanceNorm2d, LocalMeanConv2d, count_local_layers, to_local
from models import create_model, list_models
from models.base import TrainOutput
from models.hinet import HINetTrainOutput, hinet_tiny
from models.losses import charbonnier, edge_loss, laplacian, psnr_loss
from models.mprnet import MPRNetTrainOutput, mprnet_tiny
from models.nafnet import nafnet_tiny

Shape = tuple[int, ...]
Layout = list[tuple[str, Shape]]


def _conv(prefix: str, out_ch: int, in_ch: int, k: int, *, bias: bool = True) -> Layout:
    """An ``nn.Conv2d`` (weight (out, in, k, k)); ``in_ch`` is per group (1 for a depthwise conv)."""
    return [(f"{prefix}.weight", (out_ch, in_ch, k, k))] + ([(f"{prefix}.bias", (out_ch,))] if bias else [])


# --- NAFNet ------------------------------------------------------------------------------------------------------


def _nafnet_layout(
    width: int, enc: tuple[int, ...] = (1, 1, 1, 28), middle: int = 1, dec: tuple[int, ...] = (1, 1, 1, 1)
) -> Layout:
    """``NAFNet(width, middle_blk_num, enc_blk_nums, dec_blk_nums)``: registration order intro, ending, encoders,
    decoders, middle_blks (a ModuleList slot re-assigned with a Sequential), ups, downs."""

    def block(prefix: str, c: int) -> Layout:  # NAFBlock(c), DW_Expand = FFN_Expand = 2; beta/gamma are its own
        return [
            (f"{prefix}.beta", (1, c, 1, 1)),
            (f"{prefix}.gamma", (1, c, 1, 1)),
            *_conv(f"{prefix}.conv1", 2 * c, c, 1),
            *_conv(f"{prefix}.conv2", 2 * c, 1, 3),  # depthwise
            *_conv(f"{prefix}.conv3", c, c, 1),
            *_conv(f"{prefix}.sca.1", c, c, 1),
            *_conv(f"{prefix}.conv4", 2 * c, c, 1),
            *_conv(f"{prefix}.conv5", c, c, 1),
            (f"{prefix}.norm1.weight", (c,)),
            (f"{prefix}.norm1.bias", (c,)),
            (f"{prefix}.norm2.weight", (c,)),
            (f"{prefix}.norm2.bias", (c,)),
        ]

    layout = _conv("intro", width, 3, 3) + _conv("ending", 3, width, 3)
    enc_widths = [width * 2**i for i in range(len(enc))]
    bottom = width * 2 ** len(enc)
    for i, (n, c) in enumerate(zip(enc, enc_widths, strict=True)):
        layout += [e for j in range(n) for e in block(f"encoders.{i}.{j}", c)]
    for i, (n, c) in enumerate(zip(dec, reversed(enc_widths), strict=True)):
        layout += [e for j in range(n) for e in block(f"decoders.{i}.{j}", c)]
    layout += [e for j in range(middle) for e in block(f"middle_blks.{j}", bottom)]
    for i, c in enumerate(reversed(enc_widths)):  # 1x1 conv to 2 x (2c) channels, no bias, then PixelShuffle(2)
        layout += _conv(f"ups.{i}.0", 4 * c, 2 * c, 1, bias=False)
    for i, c in enumerate(enc_widths):  # 2x2 stride-2 conv doubling the width
        layout += _conv(f"downs.{i}", 2 * c, c, 2)
    return layout


# --- HINet -------------------------------------------------------------------------------------------------------


def _hinet_conv_block(prefix: str, in_ch: int, out_ch: int, *, down: bool, csff: bool, hin: bool) -> Layout:
    """``UNetConvBlock``: identity, conv_1, conv_2, [csff_enc, csff_dec], [norm: half-width affine IN], [downsample]."""
    layout = _conv(f"{prefix}.identity", out_ch, in_ch, 1)
    layout += _conv(f"{prefix}.conv_1", out_ch, in_ch, 3) + _conv(f"{prefix}.conv_2", out_ch, out_ch, 3)
    if down and csff:
        layout += _conv(f"{prefix}.csff_enc", out_ch, out_ch, 3) + _conv(f"{prefix}.csff_dec", out_ch, out_ch, 3)
    if hin:
        layout += [(f"{prefix}.norm.weight", (out_ch // 2,)), (f"{prefix}.norm.bias", (out_ch // 2,))]
    if down:
        layout += _conv(f"{prefix}.downsample", out_ch, out_ch, 4, bias=False)
    return layout


def _hinet_layout(wf: int = 64, depth: int = 5, hin: tuple[int, int] = (3, 4)) -> Layout:
    """``HINet(wf, depth, hin_position_left, hin_position_right)``: down_path_1, down_path_2, conv_01, conv_02,
    up_path_1, up_path_2, skip_conv_1, skip_conv_2, sam12, cat12, last."""
    paths: dict[str, Layout] = {"down_path_1": [], "down_path_2": []}
    prev = wf
    for i in range(depth):
        c, down, use_hin = wf * 2**i, i + 1 < depth, hin[0] <= i <= hin[1]
        for p, csff in (("down_path_1", False), ("down_path_2", down)):
            paths[p] += _hinet_conv_block(f"{p}.{i}", prev, c, down=down, csff=csff, hin=use_hin)
        prev = c
    layout = paths["down_path_1"] + paths["down_path_2"] + _conv("conv_01", wf, 3, 3) + _conv("conv_02", wf, 3, 3)
    ups: dict[str, Layout] = {"up_path_1": [], "up_path_2": [], "skip_conv_1": [], "skip_conv_2": []}
    for j, i in enumerate(reversed(range(depth - 1))):
        c = wf * 2**i
        for p in ("up_path_1", "up_path_2"):  # UNetUpBlock: ConvTranspose2d (in, out, 2, 2) + UNetConvBlock
            ups[p] += [(f"{p}.{j}.up.weight", (prev, c, 2, 2)), (f"{p}.{j}.up.bias", (c,))]
            ups[p] += _hinet_conv_block(f"{p}.{j}.conv_block", prev, c, down=False, csff=False, hin=False)
        for p in ("skip_conv_1", "skip_conv_2"):
            ups[p] += _conv(f"{p}.{j}", c, c, 3)
        prev = c
    layout += ups["up_path_1"] + ups["up_path_2"] + ups["skip_conv_1"] + ups["skip_conv_2"]
    sam = _conv("sam12.conv1", wf, wf, 3) + _conv("sam12.conv2", 3, wf, 3) + _conv("sam12.conv3", wf, 3, 3)
    return layout + sam + _conv("cat12", wf, 2 * wf, 1) + _conv("last", 3, wf, 3)


# --- MPRNet ------------------------------------------------------------------------------------------------------


def _mprnet_layout(n: int = 96, s: int = 48, so: int = 32, num_cab: int = 8, k: int = 3, r: int = 4) -> Layout:
    """``MPRNet(n_feat, scale_unetfeats, scale_orsnetfeats, num_cab, kernel_size, reduction, bias=False)``.

    Every conv is bias-free. ``CAB``: CA (registered first) then body = conv, the shared PReLU (listed at every
    place it is used), conv.
    """

    def cab(prefix: str, c: int) -> Layout:
        return [
            *_conv(f"{prefix}.CA.conv_du.0", c // r, c, 1, bias=False),
            *_conv(f"{prefix}.CA.conv_du.2", c, c // r, 1, bias=False),
            *_conv(f"{prefix}.body.0", c, c, k, bias=False),
            (f"{prefix}.body.1.weight", (1,)),
            *_conv(f"{prefix}.body.2", c, c, k, bias=False),
        ]

    def conv(prefix: str, out_ch: int, in_ch: int, size: int = 1) -> Layout:
        return _conv(prefix, out_ch, in_ch, size, bias=False)

    widths = (n, n + s, n + 2 * s)

    def encoder(prefix: str, csff: bool) -> Layout:
        out = [
            e for lvl, c in enumerate(widths, 1) for j in range(2) for e in cab(f"{prefix}.encoder_level{lvl}.{j}", c)
        ]
        out += conv(f"{prefix}.down12.down.1", n + s, n) + conv(f"{prefix}.down23.down.1", n + 2 * s, n + s)
        if csff:
            out += [
                e
                for kind in ("enc", "dec")
                for i, c in enumerate(widths, 1)
                for e in conv(f"{prefix}.csff_{kind}{i}", c, c)
            ]
        return out

    def decoder(prefix: str) -> Layout:
        out = [
            e for lvl, c in enumerate(widths, 1) for j in range(2) for e in cab(f"{prefix}.decoder_level{lvl}.{j}", c)
        ]
        out += cab(f"{prefix}.skip_attn1", n) + cab(f"{prefix}.skip_attn2", n + s)
        return out + conv(f"{prefix}.up21.up.1", n, n + s) + conv(f"{prefix}.up32.up.1", n + s, n + 2 * s)

    def orsnet(prefix: str) -> Layout:
        c = n + so
        out: Layout = []
        for o in (1, 2, 3):
            out += [e for j in range(num_cab) for e in cab(f"{prefix}.orb{o}.body.{j}", c)]
            out += conv(f"{prefix}.orb{o}.body.{num_cab}", c, c, k)
        out += conv(f"{prefix}.up_enc1.up.1", n, n + s) + conv(f"{prefix}.up_dec1.up.1", n, n + s)
        for name in ("up_enc2", "up_dec2"):
            out += conv(f"{prefix}.{name}.0.up.1", n + s, n + 2 * s) + conv(f"{prefix}.{name}.1.up.1", n, n + s)
        return out + [e for name in ("enc", "dec") for i in (1, 2, 3) for e in conv(f"{prefix}.conv_{name}{i}", c, n)]

    layout = [e for i in (1, 2, 3) for e in conv(f"shallow_feat{i}.0", n, 3, k) + cab(f"shallow_feat{i}.1", n)]
    layout += encoder("stage1_encoder", False) + decoder("stage1_decoder")
    layout += encoder("stage2_encoder", True) + decoder("stage2_decoder") + orsnet("stage3_orsnet")
    for sam in ("sam12", "sam23"):  # kernel_size 1
        layout += conv(f"{sam}.conv1", n, n) + conv(f"{sam}.conv2", 3, n) + conv(f"{sam}.conv3", n, 3)
    return layout + conv("concat12", n, 2 * n, k) + conv("concat23", n + so, 2 * n, k) + conv("tail", 3, n + so, k)


# --- Layout, size and loading ---------------------------------------------------------------------------------------

_RELEASE = {
    "nafnet_w32": (lambda: _nafnet_layout(32), 17_111_907, 664),
    "nafnet_w64": (lambda: _nafnet_layout(64), 67_888_835, 664),
    "hinet": (lambda: _hinet_layout(), 88_668_806, 186),
    "mprnet": (lambda: _mprnet_layout(), 20_127_073, 316),
}
# The tiny variants with the release constructors' equivalent arguments (see each factory).
_TINY = {
    "nafnet_tiny": (lambda: _nafnet_layout(8, enc=(1, 1, 1, 1)), 178),
    "hinet_tiny": (lambda: _hinet_layout(wf=8, depth=4, hin=(2, 3)), 148),
    "mprnet_tiny": (lambda: _mprnet_layout(n=16, s=8, so=8, num_cab=2), 226),
}


def _layout(model: nn.Module) -> Layout:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _meta_model(name: str) -> nn.Module:
    """The registered model with its parameters on the meta device: shapes and counts without allocating 88 M floats."""
    with torch.device("meta"):
        return create_model(name)


def _unique_numel(layout: Layout) -> int:
    """Parameter count of a layout, counting MPRNet's shared PReLU (its ``body.1.weight`` entries) once."""
    prelu = [key for key, _ in layout if key.endswith(".body.1.weight")]
    return sum(math.prod(shape) for _, shape in layout) - max(len(prelu) - 1, 0)


def test_registered() -> None:
    assert set(_RELEASE) | set(_TINY) <= set(list_models())


@pytest.mark.parametrize("name", list(_RELEASE))
def test_parameter_counts_match_release(name: str) -> None:
    release_layout, params, entries = _RELEASE[name]
    model = _meta_model(name)
    assert model.num_parameters == params
    assert len(model.state_dict()) == entries
    assert _unique_numel(release_layout()) == params  # the hand-written layout agrees with the published count


@pytest.mark.parametrize("name", list(_RELEASE))
def test_state_dict_layout_is_release_layout(name: str) -> None:
    expected = _RELEASE[name][0]()
    assert len(expected) == _RELEASE[name][2]
    assert _layout(_meta_model(name)) == expected  # keys, shapes and order


@pytest.mark.parametrize("name", list(_TINY))
def test_tiny_layout_is_release_layout(name: str) -> None:
    layout, entries = _TINY[name]
    expected = layout()
    assert len(expected) == entries
    assert _layout(create_model(name)) == expected


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("nafnet_w32", "encoders.3.27.gamma"),
        ("nafnet_w64", "middle_blks.0.conv2.weight"),
        ("hinet", "down_path_2.4.norm.bias"),
        ("mprnet", "stage3_orsnet.orb3.body.8.weight"),
    ],
)
def test_release_like_state_dict_loads_strictly(name: str, probe: str) -> None:
    model = create_model(name)
    generator = torch.Generator().manual_seed(0)
    release_like = {k: torch.randn(shape, generator=generator) for k, shape in _RELEASE[name][0]()}
    model.load_state_dict(release_like, strict=True)
    torch.testing.assert_close(model.state_dict()[probe], release_like[probe], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("factory", "name"), [(nafnet_tiny, "nafnet_tiny"), (hinet_tiny, "hinet_tiny"), (mprnet_tiny, "mprnet_tiny")]
)
def test_tiny_size_matches_docstring(factory: object, name: str) -> None:
    count = create_model(name).num_parameters
    assert f"{count:,} parameters" in (getattr(factory, "__doc__", "") or "")


def test_mprnet_prelu_is_shared() -> None:
    """The release builds one ``nn.PReLU`` and hands it to every CAB: one parameter, 55 state-dict entries."""
    model = create_model("mprnet")
    state = model.state_dict()
    prelu = [k for k in state if k.endswith(".body.1.weight")]
    assert len(prelu) == 55  # 3 shallow + 2 x 6 encoder + 2 x 8 decoder + 3 x 8 ORB CABs
    assert len({state[k].data_ptr() for k in prelu}) == 1
    prelus = {id(m) for m in model.modules() if isinstance(m, nn.PReLU)}
    assert len(prelus) == 1
    assert sum(p.numel() for p in model.parameters()) == 20_127_073
    assert sum(v.numel() for v in state.values()) == 20_127_073 + 54
    # A release checkpoint holds 55 copies of one value; after a strict load they all read back as that value.
    state = {k: v.clone() for k, v in state.items()}
    for k in prelu:
        state[k].fill_(0.125)
    model.load_state_dict(state, strict=True)
    assert all(v.item() == 0.125 for k, v in model.state_dict().items() if k in prelu)


def test_hinet_half_instance_norm_at_levels_3_and_4() -> None:
    model = _meta_model("hinet")
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    assert set(norms) == {f"down_path_{s}.{lvl}.norm" for s in (1, 2) for lvl in (3, 4)}
    for name, norm in norms.items():
        level = int(name.split(".")[1])
        assert norm.num_features == 64 * 2**level // 2  # half of the level's width
        assert norm.affine and not norm.track_running_stats


@pytest.mark.parametrize(
    ("name", "layer", "count"),
    [
        # NAFNet: one global pool per NAFBlock, (1 + 1 + 1 + 28) encoder + 1 middle + 4 decoder = 36.
        ("nafnet_w32", nn.AdaptiveAvgPool2d, 36),
        # HINet: the four half instance norms (levels 3 and 4 of both stages).
        ("hinet", nn.InstanceNorm2d, 4),
        # MPRNet: one global pool per CAB.
        ("mprnet", nn.AdaptiveAvgPool2d, 55),
    ],
)
def test_tlc_converts_global_layers(name: str, layer: type[nn.Module], count: int) -> None:
    model = create_model(name).eval()
    assert sum(isinstance(m, layer) for m in model.modules()) == count
    local = to_local(model, (32, 32))
    assert count_local_layers(local) == count
    assert not any(isinstance(m, layer) for m in local.modules())
    assert _layout(local) == _layout(model)  # checkpoints still load
    if name == "hinet":
        assert isinstance(local.get_submodule("down_path_1.3.norm"), LocalInstanceNorm2d)
        assert isinstance(local.get_submodule("down_path_2.4.norm"), LocalInstanceNorm2d)
    elif name == "nafnet_w32":  # C -> C attention: nothing to fuse
        assert all(isinstance(m, LocalAvgPool2d) for n, m in local.named_modules() if n.endswith("sca.0"))
    else:  # each pool fused into its C -> C/4 squeeze convolution
        assert all(type(m) is nn.Identity for n, m in local.named_modules() if n.endswith("avg_pool"))
        assert all(isinstance(m, LocalMeanConv2d) for n, m in local.named_modules() if n.endswith("conv_du.0"))
    # At the training size every window covers its whole feature map, so the converted model is unchanged.
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(local(lq), model(lq), rtol=1e-4, atol=1e-4)


# --- Losses --------------------------------------------------------------------------------------------------------


def test_psnr_loss_constant_error() -> None:
    gt = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for e in (0.1, 0.01, 0.0):
        assert psnr_loss(gt + e, gt).item() == pytest.approx(10 * math.log10(e * e + 1e-8), rel=1e-12, abs=1e-12)
    # Per image, then averaged over the batch: the mean of the two images' dB values, not the dB of the mean MSE.
    gt2 = gt.repeat(2, 1, 1, 1)
    pred = gt2 + torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    expected = 0.5 * (10 * math.log10(0.01 + 1e-8) + 10 * math.log10(1e-4 + 1e-8))
    assert psnr_loss(pred, gt2).item() == pytest.approx(expected, rel=1e-12)


def test_charbonnier_known_difference() -> None:
    diff = torch.tensor([[0.0, 0.5], [-2.0, 1e-3]], dtype=torch.float64).view(1, 1, 2, 2)
    expected = (1e-3 + math.sqrt(0.25 + 1e-6) + math.sqrt(4.0 + 1e-6) + math.sqrt(2e-6)) / 4
    assert charbonnier(diff + 0.3, torch.full_like(diff, 0.3)).item() == pytest.approx(expected, rel=1e-12)


# Laplacian of a constant c under replicate padding, by hand. The 1-D taps t = (.05, .25, .4, .25, .05) sum to 1, so
# G(c) = c; the re-upsampled image is 4c on even (row, col) and 0 elsewhere, and G of it is 4c * g(row) * g(col),
# where g(i) = sum_k t_k * even(clamp(i + k - 2)) is 0.5 inside (.05 + .4 + .05 on even i, .25 + .25 on odd i) but
# not within 2 pixels of a border, where the padding repeats the edge row:
#   i = 0: rows 0 0 0 1 2 -> .05 + .25 + .4 + .05 = .75;  i = 1: rows 0 0 1 2 3 -> .05 + .25 + .25 = .55;
#   last index odd (n even): n-1 -> .25, n-2 -> .45;     last index even (n odd): mirror image, .75 and .55.
# So laplacian(c) = c * (1 - 4 g g^T): zero in the interior only, NOT zero on the 2-pixel border band (the release's
# EdgeLoss computes exactly the same).
_G = {8: [0.75, 0.55, 0.5, 0.5, 0.5, 0.5, 0.45, 0.25], 9: [0.75, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.55, 0.75]}
_G[10] = [0.75, 0.55, *[0.5] * 6, 0.45, 0.25]


def _ring(h: int, w: int) -> torch.Tensor:
    """``laplacian`` of the constant 1 on an h x w image: ``1 - 4 g g^T`` (float64)."""
    return 1 - 4 * torch.outer(torch.tensor(_G[h], dtype=torch.float64), torch.tensor(_G[w], dtype=torch.float64))


@pytest.mark.parametrize(("h", "w"), [(8, 10), (9, 8)])
def test_laplacian_of_constant(h: int, w: int) -> None:
    c = 0.3
    expected = c * _ring(h, w)
    lap = laplacian(torch.full((2, 3, h, w), c, dtype=torch.float64))
    torch.testing.assert_close(lap, expected.expand(2, 3, h, w), rtol=0, atol=1e-12)
    assert lap[..., 2:-2, 2:-2].abs().max().item() < 1e-12
    assert lap[0, 0, 0, 0].item() == pytest.approx(c * (1 - 4 * 0.75**2))  # -1.25 c at the corner


def test_edge_loss_identical_and_constant_offset() -> None:
    x = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Identical images: the Charbonnier floor sqrt(eps^2) = 1e-3, not 0.
    assert edge_loss(x, x).item() == pytest.approx(1e-3, rel=1e-12)
    # A constant offset d: laplacian is linear, so the difference is laplacian(d) = d (1 - 4 g g^T) (see above).
    d = 0.2
    band = d * _ring(8, 10)
    expected = torch.sqrt(band**2 + 1e-6).mean().item()
    assert edge_loss(x + d, x).item() == pytest.approx(expected, rel=1e-9)
    assert expected > 0.02  # far above the floor: the border band is not zero


def test_hinet_loss_is_half_psnr_per_stage() -> None:
    gt = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = HINetTrainOutput(restored=gt + 0.01, stage1=gt - 0.1)
    terms = create_model("hinet_tiny").loss(out, gt)
    assert set(terms) == {"psnr_loss_stage1", "psnr_loss_stage2", "total"}
    expected = 0.5 * (10 * math.log10(0.01 + 1e-8) + 10 * math.log10(1e-4 + 1e-8))
    assert terms["total"].item() == pytest.approx(expected, rel=1e-12)
    assert terms["total"].item() == pytest.approx(
        0.5 * (psnr_loss(out.stage1, gt) + psnr_loss(out.restored, gt)).item()
    )
    with pytest.raises(TypeError):
        create_model("hinet_tiny").loss(TrainOutput(restored=gt), gt)


def test_mprnet_loss_is_charbonnier_plus_edge() -> None:
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 8, 10, generator=generator, dtype=torch.float64)
    stages = [gt + 0.1 * torch.randn(gt.shape, generator=generator, dtype=torch.float64) for _ in range(3)]
    out = MPRNetTrainOutput(restored=stages[0], stage2=stages[1], stage1=stages[2])
    terms = create_model("mprnet_tiny").loss(out, gt)
    char = sum(charbonnier(s, gt).item() for s in stages)
    edge = sum(edge_loss(s, gt).item() for s in stages)
    assert terms["charbonnier"].item() == pytest.approx(char, rel=1e-12)
    assert terms["edge"].item() == pytest.approx(edge, rel=1e-12)
    assert terms["total"].item() == pytest.approx(char + 0.05 * edge, rel=1e-12)
    # Constant offsets per stage: every term is known in closed form.
    offsets = (0.01, -0.02, 0.05)
    out = MPRNetTrainOutput(restored=gt + offsets[0], stage2=gt + offsets[1], stage1=gt + offsets[2])
    ring = _ring(8, 10)
    char = sum(math.sqrt(d * d + 1e-6) for d in offsets)
    edge = sum(torch.sqrt((d * ring) ** 2 + 1e-6).mean().item() for d in offsets)
    assert create_model("mprnet_tiny").loss(out, gt)["total"].item() == pytest.approx(char + 0.05 * edge, rel=1e-9)


# --- Golden outputs --------------------------------------------------------------------------------------------------


def _fixed_state(layout: Layout) -> dict[str, torch.Tensor]:
    """Deterministic, RNG-free float64 weights for a (key, shape) list: a scaled sine per entry."""
    state = {}
    for i, (key, shape) in enumerate(layout):
        n = math.prod(shape)
        wave = torch.sin(torch.arange(n, dtype=torch.float64) * 0.7 + i).reshape(shape)
        if len(shape) > 1:
            state[key] = wave / math.sqrt(n // shape[0])
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            state[key] = 1.0 + 0.1 * wave
        else:
            state[key] = 0.1 * wave
    return state


def _fixed_input(h: int = 32, w: int = 32) -> torch.Tensor:
    c = torch.arange(3, dtype=torch.float64).view(1, 3, 1, 1)
    y = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    x = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    return 0.5 + 0.4 * torch.sin(0.3 * y + 0.7 * x + 1.1 * c) * torch.cos(0.2 * x - 0.5 * y)


_POINTS = [(0, 0, 0), (1, 13, 29), (2, 31, 31), (0, 17, 5)]  # (channel, row, col)

# Computed with the release code (the tiny configurations through the release constructors, float64, eval mode,
# ``_fixed_state`` loaded strictly into the release model, input ``_fixed_input()``): NAFNet at
# megvii-research/NAFNet@2b4af71ebe098a92a75910c233a3965a3e93ede4, HINet at
# megvii-model/HINet@4e7231543090e6280d03fac22b3bb6869a25dfad, MPRNet at
# swz30/MPRNet@43feb2aed45f5e0b9082c78c8c455160e30a3a82.
# Per output: (sum over the image, values at _POINTS).
_GOLDEN = {
    "nafnet_tiny": {
        "restored": (
            1403.4524135462075,
            [1.6495340016688933, 0.966709585155983, -1.0468063785905373, 0.7291711878936971],
        ),
    },
    "hinet_tiny": {  # the release returns [out_1, out_2]
        "stage1": (850.2248557839788, [1.1287438597213666, 2.091585134020488, 3.5216826771454985, 2.177849015345561]),
        "restored": (
            -12715.463895225326,
            [-34.50307143295442, 16.765160035242953, 48.17291057251205, 51.48493638661386],
        ),
    },
    "mprnet_tiny": {  # the release returns [stage3, stage2, stage1]
        "restored": (
            1805.6980359452873,
            [2.142348239677745, -1.271551520959509, 1.163121947851526, 1.3241573374868794],
        ),
        "stage2": (
            1847.2422284342372,
            [1.7768631299657405, -0.9553733075805876, 3.129787473204433, 0.4321848101512347],
        ),
        "stage1": (
            1559.233190775484,
            [-0.7450627189090766, -0.04329373329544606, -0.6212959453661607, 0.5105969087527841],
        ),
    },
}


@pytest.mark.parametrize("name", list(_GOLDEN))
def test_golden_outputs_match_release(name: str) -> None:
    model = create_model(name).double().eval()
    model.load_state_dict(_fixed_state(_TINY[name][0]()), strict=True)
    lq = _fixed_input()
    with torch.no_grad():
        out = model.forward_train(lq, lq)
        final = model(lq)
    torch.testing.assert_close(final, out.restored, rtol=0, atol=0)
    for field, (total, values) in _GOLDEN[name].items():
        image = getattr(out, field)
        assert image.sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9)
        got = [image[0, c, h, w].item() for c, h, w in _POINTS]
        assert got == pytest.approx(values, rel=1e-9, abs=1e-9)


def test_hinet_refuses_a_training_crop_that_leaves_a_1x1_instance_norm() -> None:
    model = create_model("hinet_tiny")  # depth 4: pad multiple 8, deepest level 1/8 of the crop
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 16"):
        model.forward_train(x, x)
    out = model.forward_train(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert out.restored.shape == (1, 3, 16, 16)
