"""Stripformer (models/stripformer.py): sizes, the release's keys, parity with the release's network, its loss.

The golden values were computed once with the release's own code (pp00704831/Stripformer-ECCV-2022-@9efba88
``models/Stripformer.py``), in float64 on the CPU, with the weights of ``tests.conftest.seeded_state`` loaded strictly
(our keys are the release's) and the inputs of ``tests.conftest.seeded_input``: the whole network ``Stripformer()``
(it has no arguments, so only the full size) fed ``x - 0.5`` with 0.5 added to its output as the test scripts do, and
``Intra_SA(40, 5)`` / ``Inter_SA(40, 5)`` (the tiny variant's width) on a non-square map and on a square one (where the
release stacks the row and column strips into one batch). Against the release in the same process the outputs
agreed to 1e-12 (sums over the image) and 3e-16 (values). Neither the network nor the release files are needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import create_model, load_checkpoint
from models.losses import charbonnier, edge_loss
from models.stripformer import LOSS_WEIGHTS, Inter_SA, Intra_SA, StripformerTrainOutput
from tests.conftest import check_summary, seeded_input, seeded_state

PARAMS = {"stripformer": 19_708_611, "stripformer_tiny": 99_291}


def _pair_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]


def _block_keys(prefix: str, inter: bool) -> list[str]:
    """``Intra_SA`` / ``Inter_SA``'s keys in registration order."""
    middle = ["conv_h", "conv_v", "ffn_norm", "ffn.fc1", "ffn.fc2", "fuse_out"]
    if not inter:
        middle = ["qkv_local_h", "qkv_local_v", "fuse_out", "ffn_norm", "ffn.fc1", "ffn.fc2"]
    names = ["attention_norm", "conv_input", *middle, "PEG.PEG"]
    return [f"{prefix}.{n}.{p}" for n in names for p in ("weight", "bias")]


def _release_keys(blocks: int = 12, decoder_blocks: int = 6) -> list[str]:
    """``Stripformer()``'s keys in the release's registration order."""
    one = [f"{n}.{p}" for n in ("0",) for p in ("weight", "bias")]
    keys = [f"encoder.en_layer1_1.{k}" for k in one]
    keys += [k for i in (2, 3, 4) for k in _pair_keys(f"encoder.en_layer1_{i}")]
    keys += [f"encoder.en_layer2_1.{k}" for k in one]
    keys += [k for i in (2, 3, 4) for k in _pair_keys(f"encoder.en_layer2_{i}")]
    keys += [f"encoder.en_layer3_1.{k}" for k in one]
    keys += [k for i in range(1, blocks + 1) for k in _block_keys(f"Trans_block_{i}", inter=i % 2 == 0)]
    keys += [f"decoder.de_layer3_1.{k}" for k in one] + [f"decoder.de_layer2_2.{k}" for k in one]
    keys += [k for i in range(1, decoder_blocks + 1) for k in _block_keys(f"decoder.de_block_{i}", inter=i % 2 == 0)]
    keys += [f"decoder.de_layer2_1.{k}" for k in one] + _pair_keys("decoder.de_layer1_3")
    return keys + _pair_keys("decoder.de_layer1_2") + [f"decoder.de_layer1_1.{k}" for k in one]


# Release output summaries (``tests.conftest.check_summary``) for ``seeded_input(*input)`` (``c=40``: the blocks).
GOLDEN = {
    "stripformer": {
        "input": [1, 32, 48],
        "top_left": [
            1.0621569485665447,
            0.700724894242011,
            0.4522322180011072,
            1.1186116161835038,
            0.8560416205051189,
            0.7398922525195449,
            0.8939788627240186,
            0.6881258580665495,
            0.3778272503000176,
            0.9997112389495326,
            1.1390719047864688,
            0.8425708240433758,
            0.43266638777840627,
            0.8428287469262188,
            0.005693805446948308,
            0.14919985033998207,
            0.8818043625306464,
            0.5232400679144436,
        ],
        "bottom_right": [
            0.7530842307765744,
            0.7032509863658689,
            0.6627045681180392,
            0.15762562056755053,
            0.7334584639147937,
            0.5505943373044735,
            0.6260708538522568,
            0.9253508136104698,
            0.8151190836020414,
            0.7902763839422455,
            0.8547580264343029,
            0.662528912674452,
            0.8003327947023722,
            0.2333395505408477,
            0.17097811420718606,
            0.2857345002903906,
            0.6772958705390697,
            0.3891386720456339,
        ],
        "sum": 3475.6909732330405,
        "abs_sum": 3482.990952233729,
        "ramp_sum": 1747.3067110274694,
    },
    "Intra_SA_8x12": {
        "input": [2, 8, 12],
        "top_left": [
            0.4156790143742881,
            0.08599041401731414,
            -0.07014021756058084,
            -0.3035704811988984,
            -0.0155896327701871,
            -0.24238748255098547,
            0.12577901586396767,
            -0.012553077363992811,
            0.9195493182573904,
            1.082318350865331,
            0.0945293770100589,
            0.869168154338479,
            0.5094138385933814,
            0.648025244770722,
            0.9818917593507857,
            0.8194050717929493,
            1.001622771930296,
            0.525779848133017,
        ],
        "bottom_right": [
            0.01695660678641936,
            0.44428904642964256,
            0.0598964740501195,
            -0.34293297432945336,
            -0.6703453448007951,
            0.18571008294878222,
            -0.32373101223222356,
            0.2281070125958754,
            0.10186544979728349,
            -0.12277852174210115,
            0.6544356761039842,
            1.1219876196310905,
            0.9836550052512838,
            1.1744887802205377,
            0.4723022799593559,
            1.0934035338570838,
            0.6842456736759982,
            0.6073679037784472,
        ],
        "sum": 3406.4003033848385,
        "abs_sum": 4176.685626709409,
        "ramp_sum": 1662.0156143138533,
    },
    "Intra_SA_10x10": {
        "input": [1, 10, 10],
        "top_left": [
            0.21464222642068004,
            0.12055620325472441,
            0.006844061488965339,
            -0.10674402877073502,
            -0.5174960533147005,
            -0.21329023892389629,
            0.051405549551647,
            1.2665757151134622,
            0.831806816572012,
            0.8390597897748058,
            0.6348324967352728,
            0.47431326382087674,
            0.6578317916781072,
            0.44395674384337885,
            1.2905083331101626,
            0.12165591260234691,
            0.88351781256253,
            1.0428905974236702,
        ],
        "bottom_right": [
            0.07161504158247756,
            0.24250357665837963,
            -0.16543127607677396,
            -0.2911111819644381,
            0.2522469075372951,
            0.13252660878248568,
            -0.05332011969261199,
            0.4107205233437049,
            1.1232740642015635,
            1.121791931532749,
            1.0640191517457989,
            0.8544189579509627,
            1.1621973919424988,
            1.2758718788832768,
            0.7263281818030045,
            1.029160773508042,
            0.9202966140951716,
            0.6839146036980546,
        ],
        "sum": 1795.1654969058213,
        "abs_sum": 2207.2715801830727,
        "ramp_sum": 890.6243351777076,
    },
    "Inter_SA_8x12": {
        "input": [2, 8, 12],
        "top_left": [
            0.8170383918247481,
            0.4568737505391203,
            0.2895650874571448,
            -0.22399812822864273,
            -0.044988435070438926,
            -0.2040760153600003,
            0.4225304427100315,
            0.30620756655977605,
            1.2263264964116374,
            1.5231499253787246,
            0.547812003761811,
            1.2404043258611672,
            0.4390089088379982,
            0.5174462063006061,
            0.8847692270109868,
            0.8282208993306971,
            1.0604787962480475,
            0.5202888250557097,
        ],
        "bottom_right": [
            0.0016120679709269448,
            0.451179829692303,
            0.10631363273037442,
            -0.5131252283212934,
            -0.8473055119152155,
            0.24728006193548302,
            -0.07861977545000447,
            0.5521757365839175,
            0.3812760454187012,
            0.1532272458733563,
            1.0914225274316898,
            1.4944870500864957,
            0.980848280804199,
            1.2066470513395913,
            0.40234116153519267,
            1.0941786116310879,
            0.6609556413547457,
            0.5745628146577514,
        ],
        "sum": 3386.4099433007395,
        "abs_sum": 4200.7640754623035,
        "ramp_sum": 1646.6145890828316,
    },
    "Inter_SA_10x10": {
        "input": [1, 10, 10],
        "top_left": [
            0.5903261912808587,
            0.5020946593633333,
            0.3627009581558596,
            -0.08910656106595188,
            -0.634150469427078,
            -0.3118654609512985,
            0.3316317395889487,
            1.6862602058171583,
            1.1915623251079845,
            1.2353219371728925,
            0.9934931296195231,
            0.8582906251140743,
            0.6158061765380329,
            0.3717125398886762,
            1.253520141861985,
            0.19144207130723145,
            0.863131686625641,
            1.0122342088056735,
        ],
        "bottom_right": [
            0.0780123326010026,
            0.22846889852012858,
            -0.13018733483821485,
            -0.4172100605706192,
            0.05759587608642369,
            0.23354334795426612,
            0.29890571805407157,
            0.6715895200040427,
            1.515042027889716,
            1.6147141463156074,
            1.4966558884442402,
            1.2409240230843888,
            1.1430545633207416,
            1.1819987733780755,
            0.6827349163887876,
            1.0077439599509088,
            0.9178016963688559,
            0.7003962907194573,
        ],
        "sum": 1785.6511461999075,
        "abs_sum": 2225.0273120299253,
        "ramp_sum": 884.7092255800349,
    },
}


def test_parameter_counts_and_release_keys() -> None:
    assert create_model("stripformer_tiny").num_parameters == PARAMS["stripformer_tiny"]
    assert list(create_model("stripformer_tiny").state_dict()) == _release_keys(2, 2)
    model = create_model("stripformer")
    assert model.num_parameters == PARAMS["stripformer"]
    assert list(model.state_dict()) == _release_keys()


def test_matches_release_output() -> None:
    model = create_model("stripformer").double().eval()
    model.load_state_dict(seeded_state(model), strict=True)
    with torch.no_grad():
        check_summary(model(seeded_input(*GOLDEN["stripformer"]["input"])), GOLDEN["stripformer"], atol=1e-9)


@pytest.mark.parametrize("block", [Intra_SA, Inter_SA])
@pytest.mark.parametrize("size", ["8x12", "10x10"])
def test_strip_blocks_match_release(block: type, size: str) -> None:
    golden = GOLDEN[f"{block.__name__}_{size}"]
    module = block(40, 5).double().eval()
    module.load_state_dict(seeded_state(module), strict=True)
    with torch.no_grad():
        check_summary(module(seeded_input(*golden["input"], c=40)), golden)


def test_release_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """``Stripformer_gopro.pth`` is a bare state dict saved from ``nn.DataParallel`` (``module.`` keys)."""
    model = create_model("stripformer_tiny")
    state = {k: v.float() for k, v in seeded_state(model).items()}
    path = tmp_path / "Stripformer_gopro.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    fresh = create_model("stripformer_tiny")
    load_checkpoint(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_reflect_pads_to_eight_as_the_realblur_script() -> None:
    model = create_model("stripformer_tiny").double().eval()
    lq = seeded_input(1, 29, 43)
    padded = torch.nn.functional.pad(lq, (0, 5, 0, 3), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.restore(padded)[..., :29, :43], rtol=0, atol=0)


def test_loss_is_the_release_terms_on_shifted_images() -> None:
    model = create_model("stripformer_tiny")
    gen = torch.Generator().manual_seed(3)
    gt = torch.rand(2, 3, 16, 16, generator=gen, dtype=torch.float64)
    restored = gt + 0.05 * torch.randn(gt.shape, generator=gen, dtype=torch.float64)
    terms = model.loss(StripformerTrainOutput(restored=restored, blurry=gt), gt)
    assert set(terms) == {"charbonnier", "edge", "total"}
    char, edge = charbonnier(restored - 0.5, gt - 0.5), edge_loss(restored - 0.5, gt - 0.5)
    assert terms["charbonnier"].item() == pytest.approx(char.item(), rel=1e-12)
    assert terms["edge"].item() == pytest.approx(edge.item(), rel=1e-12)
    assert terms["total"].item() == pytest.approx(char.item() + LOSS_WEIGHTS["edge"] * edge.item(), rel=1e-12)


def test_contrastive_term(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import vgg19

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = create_model("stripformer_tiny", contrastive=True)
    gen = torch.Generator().manual_seed(4)
    gt = torch.rand(1, 3, 16, 16, generator=gen)
    blurry = gt + 0.2 * torch.rand(gt.shape, generator=gen)
    with pytest.raises(FileNotFoundError, match=r"vgg19-dcbb9e9d\.pth .*contrastive=False"):
        model.loss(StripformerTrainOutput(restored=gt, blurry=blurry), gt)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(vgg19(weights=None).state_dict(), tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    # Restored = sharp: d(restored, sharp) = 0, so the term is 0 exactly.
    terms = model.loss(StripformerTrainOutput(restored=gt, blurry=blurry), gt)
    assert terms["contrastive"].item() == 0.0  # and Charbonnier and edge are eps = 1e-3 each at a zero difference:
    assert terms["total"].item() == pytest.approx(1e-3 * (1 + LOSS_WEIGHTS["edge"]), rel=1e-5)
    # Restored halfway: the ratio is positive and below the 1e-7-guarded blow-up of restored = blurry.
    half = model.loss(StripformerTrainOutput(restored=(gt + blurry) / 2, blurry=blurry), gt)["contrastive"].item()
    worst = model.loss(StripformerTrainOutput(restored=blurry, blurry=blurry), gt)["contrastive"].item()
    assert 0.0 < half < 10.0 < 1e3 < worst
