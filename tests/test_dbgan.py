"""DBGAN (models/dbgan.py): sizes, the release's key layout and bare ``G.pth``, parity with the release's RRDBNet.

The golden values were computed once with the release's own code: HDCVLab/Deblurring-by-Realistic-Blurring@8f6944f
``models/modules/architecture.py`` ``RRDBNet`` (with ``block.py`` and ``spectral_norm.py``, unmodified, under
torch 2.14), built as ``networks.define_G`` builds it from ``options/test/test.json`` (``in_nc=3, out_nc=3, nf, nb,
gc, upscale=1, norm_type=None, act_type='leakyrelu', mode='CNA', upsample_mode='upconv'``), converted to float64,
``load_state_dict(_seeded_state(...), strict=True)`` (the release's keys are ours) and run in eval mode under
``no_grad`` on ``_seeded_input`` as ``DB_model.test`` runs it (RGB in [0, 1], nothing shifted or padded): ``out``
is ``net(x)`` (clamped to [0, 1] by ``RRDBNet.forward``), ``pre`` is ``x + net.model(x)`` (before that clamp). Besides
the release's nf 64 / nb 16 / gc 32, two small configurations (nf 16, gc 32, which the release hard-wires, nb 2 and
nb 1, the latter with the release's unwrapped single-block keys) are pinned so that parity is also checked fast.
Compared directly on the same weights and input, our outputs equal the release's bit for bit (maximum absolute
difference 0.0) in float64 and float32, for all three configurations. Neither the network nor the release files are
needed here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from models import TrainOutput, create_model, load_checkpoint
from models.dbgan import DBGAN
from tests.conftest import seeded_state


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights the golden values were computed with (``tests.conftest.seeded_state``, weights scaled 0.3)."""
    return seeded_state(model, seed, weight_scale=0.3)


def _seeded_input() -> torch.Tensor:
    """(1, 3, 32, 48) float64 in [0, 1): ``torch.rand`` from a generator seeded 0."""
    return torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64).unsqueeze(0)


# Release outputs for _seeded_input under _seeded_state: per configuration, ``out`` (what DB_model.test returns and
# test.py saves) and ``pre`` (its value before the clamp); top_left = t[0, :, :2, :3].flatten(), bottom_right =
# t[0, :, -2:, -3:].flatten(), ramp_sum = (t * arange(numel) / numel).sum().
GOLDEN: dict[str, dict[str, dict[str, object]]] = {
    "dbgan": {
        "out": {
            "top_left": [
                1.0,
                0.8319377930175613,
                0.5635463629297252,
                1.0,
                1.0,
                0.8904632564612603,
                0.7544192734344113,
                0.5700342356775906,
                0.12165141281181724,
                0.8095744370071594,
                0.6726905057470187,
                0.5537142907836472,
                0.5662517276345214,
                0.9793131898210541,
                0.1286476084876514,
                0.17840539221599458,
                0.8930616930338238,
                0.6199350488726697,
            ],
            "bottom_right": [
                0.81300948136202,
                0.6759791330283157,
                0.8408959045591058,
                0.4245071533926957,
                0.7013415667986546,
                0.7433123521138673,
                0.21297663477490902,
                0.5246339566924083,
                0.6649320534165636,
                0.6827932091955563,
                0.7582441517422491,
                0.5588342699914647,
                0.7911634703429468,
                0.29986952180747717,
                0.27508766673635043,
                0.16953977009452909,
                0.7369318511112314,
                0.5009901646334615,
            ],
            "ramp_sum": 1247.9280480264817,
            "sum": 2611.540161324293,
            "abs_sum": 2611.540161324293,
        },
        "pre": {
            "top_left": [
                1.146088103873466,
                0.8319377930175613,
                0.5635463629297252,
                1.167387135558027,
                1.010085942983018,
                0.8904632564612603,
                0.7544192734344113,
                0.5700342356775906,
                0.12165141281181724,
                0.8095744370071594,
                0.6726905057470187,
                0.5537142907836472,
                0.5662517276345214,
                0.9793131898210541,
                0.1286476084876514,
                0.17840539221599458,
                0.8930616930338238,
                0.6199350488726697,
            ],
            "bottom_right": [
                0.81300948136202,
                0.6759791330283157,
                0.8408959045591058,
                0.4245071533926957,
                0.7013415667986546,
                0.7433123521138673,
                0.21297663477490902,
                0.5246339566924083,
                0.6649320534165636,
                0.6827932091955563,
                0.7582441517422491,
                0.5588342699914647,
                0.7911634703429468,
                0.29986952180747717,
                0.27508766673635043,
                0.16953977009452909,
                0.7369318511112314,
                0.5009901646334615,
            ],
            "ramp_sum": 1252.812555170617,
            "sum": 2633.7925348812228,
            "abs_sum": 2634.433807868668,
        },
    },
    "nf16_nb2": {
        "out": {
            "top_left": [
                0.9467412457064118,
                0.6664257809431173,
                0.4144274423449613,
                0.9585296503114706,
                0.8307658814554864,
                0.7053240968691359,
                0.8925090196295354,
                0.6555994038238853,
                0.275443442432335,
                0.9474678476389327,
                0.7563335340559981,
                0.7071138182339431,
                0.3525883439458969,
                0.7768494019185759,
                0.0,
                0.007976235507612381,
                0.6880454680445449,
                0.39554079271867404,
            ],
            "bottom_right": [
                0.6334824407926133,
                0.4569348122552302,
                0.6022978125372497,
                0.16241300620896876,
                0.4601686467323274,
                0.5288625877500199,
                0.32470281926240496,
                0.6942473956945194,
                0.8303333665721793,
                0.797815815729066,
                0.9500910401508222,
                0.7481448483504857,
                0.6066872702785387,
                0.08597826035567432,
                0.0772524142653328,
                0.0,
                0.5405780247146019,
                0.28604768362062405,
            ],
            "ramp_sum": 1082.0693887448676,
            "sum": 2250.9849392510673,
            "abs_sum": 2250.9849392510673,
        },
        "pre": {
            "top_left": [
                0.9467412457064118,
                0.6664257809431173,
                0.4144274423449613,
                0.9585296503114706,
                0.8307658814554864,
                0.7053240968691359,
                0.8925090196295354,
                0.6555994038238853,
                0.275443442432335,
                0.9474678476389327,
                0.7563335340559981,
                0.7071138182339431,
                0.3525883439458969,
                0.7768494019185759,
                -0.09131073081517807,
                0.007976235507612381,
                0.6880454680445449,
                0.39554079271867404,
            ],
            "bottom_right": [
                0.6334824407926133,
                0.4569348122552302,
                0.6022978125372497,
                0.16241300620896876,
                0.4601686467323274,
                0.5288625877500199,
                0.32470281926240496,
                0.6942473956945194,
                0.8303333665721793,
                0.797815815729066,
                0.9500910401508222,
                0.7481448483504857,
                0.6066872702785387,
                0.08597826035567432,
                0.0772524142653328,
                -0.03079529280132834,
                0.5405780247146019,
                0.28604768362062405,
            ],
            "ramp_sum": 1079.2871581857717,
            "sum": 2254.446884182069,
            "abs_sum": 2291.351009022804,
        },
    },
    "nf16_nb1": {
        "out": {
            "top_left": [
                0.9069990685082651,
                0.6625252215442686,
                0.40904141397484706,
                0.9181258355392605,
                0.8232003874878236,
                0.7030087080985727,
                0.6880369919922765,
                0.4451914390862447,
                0.08110673483567445,
                0.7495909845697675,
                0.5523875173047406,
                0.498222019006358,
                0.30124046707697216,
                0.7421168142436417,
                0.0,
                0.0,
                0.6826650248737474,
                0.39170501629019283,
            ],
            "bottom_right": [
                0.592523402347441,
                0.4237883794189964,
                0.5979204450881156,
                0.12459642189478193,
                0.4343690688404359,
                0.5261164371664568,
                0.10595961687865368,
                0.4792385648262919,
                0.6407781866587614,
                0.6037172574946318,
                0.7652726889727202,
                0.5832574164990894,
                0.5998144979628552,
                0.07307462160947858,
                0.0601170829655244,
                0.0,
                0.5316315093911823,
                0.2701733618718962,
            ],
            "ramp_sum": 918.5932692423405,
            "sum": 1906.4070875539974,
            "abs_sum": 1906.4070875539974,
        },
        "pre": {
            "top_left": [
                0.9069990685082651,
                0.6625252215442686,
                0.40904141397484706,
                0.9181258355392605,
                0.8232003874878236,
                0.7030087080985727,
                0.6880369919922765,
                0.4451914390862447,
                0.08110673483567445,
                0.7495909845697675,
                0.5523875173047406,
                0.498222019006358,
                0.30124046707697216,
                0.7421168142436417,
                -0.10123001567992865,
                -0.04000663541123273,
                0.6826650248737474,
                0.39170501629019283,
            ],
            "bottom_right": [
                0.592523402347441,
                0.4237883794189964,
                0.5979204450881156,
                0.12459642189478193,
                0.4343690688404359,
                0.5261164371664568,
                0.10595961687865368,
                0.4792385648262919,
                0.6407781866587614,
                0.6037172574946318,
                0.7652726889727202,
                0.5832574164990894,
                0.5998144979628552,
                0.07307462160947858,
                0.0601170829655244,
                -0.03072077244936719,
                0.5316315093911823,
                0.2701733618718962,
            ],
            "ramp_sum": 900.6371114268711,
            "sum": 1880.3364711477514,
            "abs_sum": 1932.477703960243,
        },
    },
}


CONFIGS = {"dbgan": {}, "nf16_nb2": {"nf": 16, "nb": 2}, "nf16_nb1": {"nf": 16, "nb": 1}}
"""Golden configuration -> overrides of ``create_model("dbgan")`` (gc 32 throughout, as the release builds)."""


def _assert_matches(t: torch.Tensor, golden: dict[str, object]) -> None:
    assert t[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert t[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(t.numel(), dtype=t.dtype).reshape(t.shape) / t.numel()
    assert (t * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert t.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert t.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)


def _release_keys(nb: int) -> list[str]:
    """The keys of the release's ``RRDBNet(nf, nb)`` state dict, in order (``block.sequential`` unwraps one block)."""
    rdb = [f"{rdb}.conv{i}.0.{p}" for rdb in ("RDB1", "RDB2", "RDB3") for i in range(1, 6) for p in ("weight", "bias")]
    blocks = (
        [f"model.1.sub1.{key}" for key in rdb]
        if nb == 1
        else [f"model.1.sub1.{b}.{key}" for b in range(nb) for key in rdb]
    )
    return [
        "model.0.weight",
        "model.0.bias",
        *blocks,
        "model.1.sub2.0.weight",
        "model.1.sub2.0.bias",
        "model.2.weight",
        "model.2.bias",
        "model.4.weight",
        "model.4.bias",
    ]


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "tensors"), [("dbgan", 11_588_163, 488), ("dbgan_tiny", 95_667, 68)])
def test_parameter_counts(name: str, params: int, tensors: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert len(model.state_dict()) == tensors
    assert model.pad_multiple == 1


def test_keys_and_shapes_are_the_releases() -> None:
    model = create_model("dbgan")
    assert list(model.state_dict()) == _release_keys(16)
    assert list(create_model("dbgan", nb=1).state_dict()) == _release_keys(1)
    assert list(create_model("dbgan_tiny").state_dict()) == _release_keys(2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["model.0.weight"] == (64, 3, 3, 3)
    assert shapes["model.1.sub1.0.RDB1.conv1.0.weight"] == (32, 64, 3, 3)
    assert shapes["model.1.sub1.15.RDB3.conv4.0.weight"] == (32, 160, 3, 3)
    assert shapes["model.1.sub1.15.RDB3.conv5.0.weight"] == (64, 192, 3, 3)
    assert shapes["model.1.sub2.0.weight"] == (64, 64, 3, 3)
    assert shapes["model.4.weight"] == (3, 64, 3, 3)
    assert sum(p.numel() for p in model.model[1].sub1[0].parameters()) == 719_424


def test_constructor_checks_its_arguments() -> None:
    for bad in ({"nf": 0}, {"nb": 0}, {"gc": 0}, {"pixel_criterion": "l3"}, {"pixel_weight": 0.0}):
        with pytest.raises(ValueError, match="DBGAN"):
            DBGAN(**bad)


def test_init_is_the_releases_kaiming_times_a_tenth() -> None:
    """``init_weights(netG, 'kaiming', scale=0.1)``: zero biases, weights N(0, 2 / fan_in) x 0.1."""
    torch.manual_seed(0)
    model = create_model("dbgan")
    weight = model.model[1].sub1[3].RDB2.conv5[0].weight
    fan_in = weight[0].numel()
    assert weight.std().item() == pytest.approx(0.1 * math.sqrt(2 / fan_in), rel=0.02)
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, nn.Conv2d))


# --- the release's checkpoint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
def test_release_checkpoint_loads_strictly(tmp_path: Path, prefix: str) -> None:
    """``G.pth`` is ``torch.save(net.state_dict())`` of the bare network (``base_model.save_network``); a file saved
    from the DataParallel wrapper instead (``module.`` keys) loads too."""
    source = create_model("dbgan_tiny")
    state = {f"{prefix}{k}": v for k, v in _seeded_state(source).items()}
    path = tmp_path / "G.pth"
    torch.save(state, path)
    model = load_checkpoint(create_model("dbgan_tiny").double(), path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[f"{prefix}{key}"], rtol=0, atol=0)


# --- parity with the release ---------------------------------------------------------------------------------------


def _run(config: str) -> tuple[torch.Tensor, torch.Tensor]:
    model = create_model("dbgan", **CONFIGS[config]).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    x = _seeded_input()
    with torch.no_grad():
        return model(x), x + model.model(x)


@pytest.mark.parametrize("config", ["nf16_nb2", "nf16_nb1"])
def test_small_forward_matches_the_release_in_float64(config: str) -> None:
    out, pre = _run(config)
    assert out.shape == (1, 3, 32, 48)
    _assert_matches(out, GOLDEN[config]["out"])
    _assert_matches(pre, GOLDEN[config]["pre"])


@pytest.mark.slow
def test_forward_matches_the_release_in_float64() -> None:
    out, pre = _run("dbgan")
    _assert_matches(out, GOLDEN["dbgan"]["out"])
    _assert_matches(pre, GOLDEN["dbgan"]["pre"])


# --- any size, training --------------------------------------------------------------------------------------------


def test_any_size_is_the_clamped_global_residual() -> None:
    torch.manual_seed(0)
    model = create_model("dbgan_tiny").eval()
    lq = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        torch.testing.assert_close(out, torch.clamp(lq + model.model(lq), 0, 1), rtol=0, atol=0)
        torch.testing.assert_close(out, model.restore(lq), rtol=0, atol=0)  # nothing is padded
    assert out.shape == lq.shape and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(("criterion", "weight"), [("l1", 1.0), ("l2", 0.5)])
def test_forward_train_and_pixel_loss(criterion: str, weight: float) -> None:
    torch.manual_seed(0)
    model = create_model("dbgan_tiny", pixel_criterion=criterion, pixel_weight=weight)
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    assert type(out) is TrainOutput and out.restored.shape == lq.shape
    terms = model.loss(out, gt)
    assert set(terms) == {"pixel", "total"}
    diff = out.restored - gt
    pixel = diff.abs().mean() if criterion == "l1" else (diff**2).mean()
    torch.testing.assert_close(terms["pixel"], pixel)
    torch.testing.assert_close(terms["total"], weight * pixel)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.forward_train(lq, gt).restored, rtol=0, atol=0)
