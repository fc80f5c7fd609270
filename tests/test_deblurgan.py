"""DeblurGAN (models/deblurgan.py): sizes, the release's checkpoint layouts, parity with the release's generator.

The golden values were computed once with the release's own code, in float64 on the CPU, by a driver outside this
repository: ``ResnetGenerator`` of KupynOrest/DeblurGAN ``models/networks.py`` at HEAD 2499a87 ("head") and at
a6f4ad0, the authors' last version before PR #134 ("paper"; one shim: its InstanceNorm gets
``track_running_stats=True`` so that it has PyTorch 0.3's ``running_mean``/``running_var`` keys), built as
``models/test_model.py`` does (``define_G(3, 3, 64, 'resnet_9blocks', 'instance', use_dropout, [], False, True)``,
``--learn_residual`` as in the README), loaded with the weights of ``_seeded_state`` (the release's keys are ours),
fed ``(x - 0.5) / 0.5`` of ``_seeded_input`` (``transforms.Normalize``) and mapped back with ``(y + 1) / 2``
(``util.tensor2im`` before its x255). The release never calls ``eval()``:

* ``stochastic``: the release as it runs, in train mode with live ``Dropout(0.5)``, ``torch.manual_seed(1234)``
  right before the forward pass (under ``torch.no_grad()``, as ``TestModel.test``); our ``train()`` mode.
* ``deterministic``: the same, with only its ``Dropout`` modules in eval mode; our ``eval()`` mode.
* ``head_nodropout``: HEAD with ``--no_dropout`` (its block is then pad, conv, norm: no ReLU).

Neither the network nor the release files are needed here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models import CheckpointError, TrainOutput, create_model, load_checkpoint
from models.base import pad_to_multiple
from models.deblurgan import CONTENT_WEIGHT, VGG_CONV3_3, DeblurGAN, InstanceNorm, vgg19_conv3_3

GOLDEN = {
    "head/deterministic": {
        "top_left": [
            1.0,
            0.6945782325468115,
            0.6752378869002466,
            0.6036662480053575,
            0.4045989147549705,
            0.7046653388103211,
            0.8988922076258201,
            0.902199584643213,
            0.9376950026647215,
            0.0,
            0.0,
            0.0,
            0.5159431021030504,
            0.6850888035433906,
            1.0,
            0.6048681807127793,
            1.0,
            1.0,
        ],
        "bottom_right": [
            0.0,
            0.9120333943709167,
            1.0,
            0.31581546494696816,
            0.0,
            0.6427569115199636,
            0.19445998161226263,
            0.7514367867405094,
            0.49543297193550156,
            0.505968246480538,
            0.631139029075577,
            0.2876662460730829,
            0.7583736948965563,
            0.863292228961438,
            0.3676640188761091,
            0.03741267710677215,
            1.0,
            0.24272713471224683,
        ],
        "ramp_sum": 3570.9839375027364,
        "sum": 6975.923716578844,
        "abs_sum": 6975.923716578844,
    },
    "head/stochastic": {
        "top_left": [
            1.0,
            0.6035371357273582,
            0.7739583322339486,
            0.6392104416986696,
            0.29455006860517996,
            0.2110916789011893,
            0.8118238550001475,
            0.8338120503654052,
            0.45295353360986457,
            0.0,
            0.21967916504342333,
            0.0,
            0.322697041654739,
            0.6656443632737254,
            0.9752895947608983,
            0.6832868245711426,
            1.0,
            1.0,
        ],
        "bottom_right": [
            0.10185094817151746,
            0.6886365334799053,
            0.9235524993771458,
            0.44184418567311523,
            0.0,
            0.5091988280121483,
            0.06100777354372294,
            0.7406308122390027,
            0.4315783739074679,
            0.5175514080475684,
            0.7020558302911185,
            0.3462537597007207,
            0.9180296733216632,
            0.7075494369589117,
            0.4631248315877883,
            0.0,
            1.0,
            0.36483434779963836,
        ],
        "ramp_sum": 3573.3671800725465,
        "sum": 6968.04144954752,
        "abs_sum": 6968.04144954752,
    },
    "head_nodropout/deterministic": {
        "top_left": [
            1.0,
            0.9054565540429723,
            0.7914420476018127,
            0.5427840731866256,
            0.29636613695908853,
            0.7947976210192216,
            0.7159567706848133,
            0.8439770812398217,
            0.7597967136279058,
            0.0,
            0.0,
            0.13728917924195727,
            0.5070908722777678,
            0.5875331177829183,
            1.0,
            0.7678038487004761,
            1.0,
            0.9597725977591476,
        ],
        "bottom_right": [
            0.0,
            0.8655539500925138,
            0.6705175238511252,
            0.26643489514638447,
            0.0,
            0.5892107163457602,
            0.0,
            0.7718250045968087,
            0.6116831482287743,
            0.4735909933889611,
            0.6756803057515708,
            0.27092027929246665,
            0.8839362406648297,
            0.9474204841978506,
            0.38305648885140536,
            0.0434102595826138,
            1.0,
            0.4650988891866826,
        ],
        "ramp_sum": 3577.0260408546064,
        "sum": 6962.082269190287,
        "abs_sum": 6962.082269190287,
    },
    "paper/deterministic": {
        "top_left": [
            1.0,
            0.4427071783958511,
            0.7387521665846761,
            0.8212526916068379,
            0.24112572136003746,
            0.3450500581571482,
            1.0,
            0.7174920608607673,
            0.6015358812229109,
            0.0,
            0.3934907505413321,
            0.0,
            0.7583896006275008,
            0.4956553618939643,
            1.0,
            0.49775436146453933,
            1.0,
            0.7909530901006063,
        ],
        "bottom_right": [
            0.23434295528719745,
            0.6712397557583727,
            0.8798300893989619,
            0.5183839304897353,
            0.08840897311164625,
            0.6246333774659427,
            0.0,
            0.8686540270957527,
            0.5575297903708099,
            1.0,
            0.8137305898438741,
            0.544550255272752,
            0.9542178612017183,
            0.6615957523906183,
            0.12236585109030368,
            2.808460853231942e-05,
            0.9213101805153264,
            0.32330377050683223,
        ],
        "ramp_sum": 3215.874819755837,
        "sum": 6526.1219142682585,
        "abs_sum": 6526.1219142682585,
    },
    "paper/stochastic": {
        "top_left": [
            0.8339189420097552,
            0.4807772770722434,
            0.4210779583569721,
            0.664327171381224,
            0.22875650802184178,
            0.17429726329040052,
            1.0,
            0.6277871907733572,
            0.7783841601599633,
            0.18172722248050965,
            0.24881095957319765,
            0.152074608402386,
            0.6382906868316109,
            0.22078586463231398,
            0.9298863590657573,
            0.5839415922982221,
            0.8401785273030604,
            1.0,
        ],
        "bottom_right": [
            0.195978441788751,
            0.7468098811501955,
            0.9800519589716142,
            0.6495806613424572,
            0.2979586953279451,
            0.7979896075517764,
            0.22298320580912234,
            0.8835386514997812,
            0.7025665328083546,
            0.9570577355766074,
            0.49073753912188767,
            0.40250642073500054,
            0.9602896279555349,
            0.7133552760483579,
            0.254945661924521,
            0.0,
            0.9784717791954629,
            0.3247821146547108,
        ],
        "ramp_sum": 3216.9111478969526,
        "sum": 6524.9474714211765,
        "abs_sum": 6524.9474714211765,
    },
}

VARIANTS = {  # golden key -> constructor arguments of the release's network
    "head": {"block_convs": 1, "use_dropout": True},
    "head_nodropout": {"block_convs": 1, "use_dropout": False},
    "paper": {"block_convs": 2, "use_dropout": True},
}


def _seeded_state(model: DeblurGAN, seed: int = 1) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights for ``model``'s keys, drawn from one generator in sorted-key order: weights
    N(0, 1) x 0.7 / sqrt(fan) (fan: all dimensions but the first), biases and running means N(0, 1) x 0.1, running
    variances 1 + 0.1 |N(0, 1)|; ``num_batches_tracked`` 0 (drawn from nothing)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
            continue
        value = torch.randn(shape, generator=gen, dtype=torch.float64)
        if key.endswith("running_var"):
            value = 1 + 0.1 * value.abs()
        elif len(shape) > 1:
            value = value * (0.7 / math.sqrt(math.prod(shape[1:])))
        else:
            value = 0.1 * value
        state[key] = value
    return state


def _seeded_input() -> torch.Tensor:
    """(1, 3, 64, 64) float64 in [0, 1): ``torch.rand`` from a generator seeded 0."""
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64).unsqueeze(0)


def _check_golden(out: torch.Tensor, golden: dict) -> None:
    assert out.shape == (1, 3, 64, 64)
    assert out[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert out[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape) / out.numel()
    assert (out * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "params", "entries"),
    [
        ("deblurgan", {}, 6_067_459, 72),
        ("deblurgan", {"block_convs": 2}, 11_378_179, 94),
        ("deblurgan_tiny", {}, 32_451, 37),
    ],
)
def test_parameter_counts(name: str, overrides: dict, params: int, entries: int) -> None:
    model = create_model(name, **overrides)
    assert model.num_parameters == params
    assert len(model.state_dict()) == entries
    assert model.pad_multiple == 4 and model.pad_mode == "reflect"


def test_keys_are_the_releases() -> None:
    head = create_model("deblurgan").state_dict()
    assert list(head)[:5] == [
        "model.1.weight",
        "model.1.bias",
        "model.2.running_mean",
        "model.2.running_var",
        "model.2.num_batches_tracked",
    ]
    assert tuple(head["model.10.conv_block.1.weight"].shape) == (256, 256, 3, 3)
    assert "model.10.conv_block.2.running_mean" in head and "model.10.conv_block.6.weight" not in head
    assert tuple(head["model.19.weight"].shape) == (256, 128, 3, 3)  # ConvTranspose2d: (in, out, k, k)
    assert tuple(head["model.26.weight"].shape) == (3, 64, 7, 7)
    # The authors' layout (issues #145, #168): conv_block.1/.6, norms .2/.7, no num_batches_tracked (PyTorch 0.3).
    paper = create_model("deblurgan", block_convs=2).state_dict()
    assert {"model.10.conv_block.6.weight", "model.18.conv_block.7.running_var", "model.2.running_mean"} <= set(paper)
    assert not any(k.endswith("num_batches_tracked") for k in paper)
    nodrop = create_model("deblurgan", use_dropout=False)
    assert [type(m).__name__ for m in nodrop.model[10].conv_block] == ["ReflectionPad2d", "Conv2d", "InstanceNorm"]


def test_constructor_checks_its_arguments() -> None:
    for bad in ({"block_convs": 3}, {"channels": 0}, {"n_blocks": -1}, {"content_loss": "l2"}):
        with pytest.raises(ValueError, match="DeblurGAN"):
            DeblurGAN(**bad)


# --- the release's checkpoint file ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("block_convs", [1, 2])
def test_release_file_loads_strictly(tmp_path: Path, block_convs: int) -> None:
    """``latest_net_G.pth`` is a bare state dict (``BaseModel.save_network``: ``torch.save(net.state_dict())``)."""
    torch.manual_seed(0)
    source = create_model("deblurgan", block_convs=block_convs)
    state = _seeded_state(source)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    model = load_checkpoint(create_model("deblurgan", block_convs=block_convs), path)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value.to(model.state_dict()[key].dtype), rtol=0, atol=0)


def test_the_authors_file_does_not_fit_the_head_network(tmp_path: Path) -> None:
    """HEAD refuses the authors' weights (issues #145, #168); here too, with the keys listed."""
    path = tmp_path / "latest_net_G.pth"
    torch.save(create_model("deblurgan_tiny", block_convs=2).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\):\n    model\.10\.conv_block\.6\.bias"):
        load_checkpoint(create_model("deblurgan_tiny"), path)


# --- parity with the release ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_eval_mode_matches_the_release_without_dropout(variant: str) -> None:
    model = create_model("deblurgan", **VARIANTS[variant]).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    with torch.no_grad():
        out = model(_seeded_input())
    _check_golden(out, GOLDEN[f"{variant}/deterministic"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["head", "paper"])
def test_train_mode_with_a_seed_reproduces_the_releases_stochastic_output(variant: str) -> None:
    model = create_model("deblurgan", **VARIANTS[variant]).double().train()
    model.load_state_dict(_seeded_state(model), strict=True)
    torch.manual_seed(1234)
    with torch.no_grad():
        out = model(_seeded_input())
    _check_golden(out, GOLDEN[f"{variant}/stochastic"])
    assert (out - model.eval()(_seeded_input())).abs().max() > 0.1  # dropout is live in train mode


def test_instance_norm_uses_instance_statistics_in_both_modes() -> None:
    torch.manual_seed(0)
    norm = InstanceNorm(4)
    x = torch.randn(2, 4, 5, 6) * 3 + 1
    reference = torch.nn.InstanceNorm2d(4, affine=False, track_running_stats=True).train()
    expected = reference(x)
    torch.testing.assert_close(norm.train()(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(norm.running_mean, reference.running_mean, rtol=0, atol=0)
    before = norm.running_var.clone()
    torch.testing.assert_close(norm.eval()(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(norm.running_var, before, rtol=0, atol=0)  # eval leaves the buffers alone


# --- any size, training --------------------------------------------------------------------------------------------


def test_odd_size_keeps_shape_and_is_the_reflect_padded_restoration() -> None:
    torch.manual_seed(0)
    model = create_model("deblurgan_tiny").eval()
    lq = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        padded, _ = pad_to_multiple(lq, 4, "reflect")
        expected = model.restore(padded)[..., :37, :53]
        even = torch.rand(1, 3, 32, 48)
        torch.testing.assert_close(model(even), model.restore(even), rtol=0, atol=0)
    assert out.shape == lq.shape and out.min() >= 0 and out.max() <= 1  # the release clamps
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_forward_train_and_l1_content_loss() -> None:
    torch.manual_seed(0)
    model = create_model("deblurgan_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    assert type(out) is TrainOutput and out.restored.shape == lq.shape
    terms = model.loss(out, gt)
    assert set(terms) == {"content_l1", "total"}
    l1 = (2 * out.restored - 1 - (2 * gt - 1)).abs().mean()  # on the release's [-1, 1] images
    torch.testing.assert_close(terms["content_l1"], l1)
    torch.testing.assert_close(terms["total"], CONTENT_WEIGHT * l1)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="not a multiple of 4"):
        model.forward_train(torch.rand(1, 3, 34, 32), gt)


@pytest.mark.slow
def test_perceptual_loss_reads_hand_placed_vgg_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = create_model("deblurgan_tiny", content_loss="perceptual")
    lq, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match=r"vgg19-dcbb9e9d\.pth .*placed by hand"):
        model.loss(model.forward_train(lq, gt), gt)
    from torchvision.models import vgg19

    torch.manual_seed(0)
    features = vgg19(weights=None).features[: VGG_CONV3_3 + 1]
    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth"
    )
    out = model.forward_train(lq, gt)
    terms = model.loss(out, gt)
    assert set(terms) == {"content_perceptual", "total"}
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(features(2 * out.restored - 1), features(2 * gt - 1))
    torch.testing.assert_close(terms["content_perceptual"], expected)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert not any(k.startswith("_vgg") for k in model.state_dict())  # the VGG is not part of the checkpoint
    assert len(list(vgg19_conv3_3(tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth").parameters())) == 14
