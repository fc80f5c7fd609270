"""Restormer (models/restormer.py) and Restormer-Local: sizes, the release's keys, parity with the release and TLC.

The golden values were computed once with the releases' own code, in float64 on the CPU, with the weights of
``tests.conftest.seeded_state`` loaded strictly into the release modules (our keys are theirs) and the inputs of
``tests.conftest.seeded_input``:
    * ``restormer`` / ``restormer_tiny``: ``Restormer(**network_g)`` of swz30/Restormer@df766d5
      ``basicsr/models/archs/restormer_arch.py`` (the tiny one as ``dim=8, num_blocks=[1, 1, 1, 1],
      num_refinement_blocks=1``, the other arguments the release's);
    * ``restormer_tiny_local``: TLC's ``RestormerLocal(train_size=(1, 3, 32, 32), ...)`` (megvii-research/TLC@8e87983
      ``basicsr/models/archs/restormer_arch.py``: base size 1.5 x 32 = 48, windows 48/24/12/6 by level), the same tiny
      arguments and weights, on a 72x120 input;
    * ``attention_720x1280``: TLC's ``LocalAttention(48, 1, False, kernel_size=[384, 384])`` (level 1 of the full model
      after TLC's conversion for 256-px training crops) on a (1, 48, 720, 1280) map.
The one shim: the default dtype was float64 for the run, since TLC's ``grids_inverse`` allocates its sum with
``torch.zeros`` (float32 by default). Against the release modules in the same process the outputs were bit-identical
(maximum absolute difference 0) for all four. Neither the networks nor the release files are needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.evaluation.tlc import LocalWindows, count_local_layers, to_local, window_starts
from models import CheckpointError, create_model, load_checkpoint
from models.restormer import Attention
from tests.conftest import check_summary, seeded_input, seeded_state

PARAMS = {"restormer": 26_126_644, "restormer_tiny": 208_225}


def _release_keys(dim: int, blocks: tuple[int, ...], refinement: int) -> list[str]:
    """The release's state-dict keys, in its registration order (``Restormer.__init__``)."""

    def level(name: str, n: int) -> list[str]:
        per_block = [
            "norm1.body.weight",
            "norm1.body.bias",
            "attn.temperature",
            "attn.qkv.weight",
            "attn.qkv_dwconv.weight",
            "attn.project_out.weight",
            "norm2.body.weight",
            "norm2.body.bias",
            "ffn.project_in.weight",
            "ffn.dwconv.weight",
            "ffn.project_out.weight",
        ]
        return [f"{name}.{i}.{key}" for i in range(n) for key in per_block]

    keys = ["patch_embed.proj.weight", *level("encoder_level1", blocks[0]), "down1_2.body.0.weight"]
    keys += [*level("encoder_level2", blocks[1]), "down2_3.body.0.weight", *level("encoder_level3", blocks[2])]
    keys += ["down3_4.body.0.weight", *level("latent", blocks[3]), "up4_3.body.0.weight", "reduce_chan_level3.weight"]
    keys += [*level("decoder_level3", blocks[2]), "up3_2.body.0.weight", "reduce_chan_level2.weight"]
    keys += [*level("decoder_level2", blocks[1]), "up2_1.body.0.weight", *level("decoder_level1", blocks[0])]
    return [*keys, *level("refinement", refinement), "output.weight"]


_LAYOUT = {"restormer": (48, (4, 6, 6, 8), 4), "restormer_tiny": (8, (1, 1, 1, 1), 1)}


# Release output summaries (see ``tests.conftest.check_summary``) for ``seeded_input(*input)``.
GOLDEN = {
    "restormer_tiny": {
        "input": [2, 32, 40],
        "top_left": [
            0.8943319976608838,
            0.6035873058115832,
            0.20635208691061369,
            0.14567477792955338,
            -0.12305785161495869,
            0.5648967703839959,
            0.20776614249977282,
            0.4902862933592588,
            0.4461205060021406,
            -0.12706641906164595,
            -0.25735612257667567,
            -0.05092303663467135,
            -0.06478709248153103,
            0.1602601724710833,
            0.7132976812288851,
            0.9950279524131321,
            1.1385405946545364,
            0.0811609485662189,
        ],
        "bottom_right": [
            0.13269044484878648,
            0.1027541985915762,
            -0.006225341831645498,
            0.3258268336937606,
            0.9017176771084406,
            0.6019364657942105,
            -0.20114679944033104,
            0.6452861091201189,
            0.5009295193708518,
            0.9252117634650044,
            0.19830306872525968,
            0.1347348192726201,
            0.34494654348494913,
            0.32441078649461674,
            0.15559883164757177,
            0.8648515996239803,
            0.2172582327215866,
            0.45000186013570387,
        ],
        "sum": 2839.265996002631,
        "abs_sum": 3186.150764199382,
        "ramp_sum": 1437.6138808211397,
    },
    "restormer": {
        "input": [1, 64, 64],
        "top_left": [
            0.8694309423395865,
            0.6273302995585961,
            0.2163782806157168,
            0.46601517829348504,
            0.022122615208161805,
            0.43937914385275795,
            0.8940296704268902,
            0.6849358964997159,
            0.6807654953698148,
            0.07616786259174788,
            0.17131353960322399,
            0.04649997293660106,
            0.7562423829465112,
            0.5672812701882779,
            1.3123230074634393,
            0.5636968164130818,
            1.3925744584398285,
            1.4455482123758876,
        ],
        "bottom_right": [
            0.16848300122350723,
            0.4882170927588363,
            0.8186931213107888,
            0.5906008306929696,
            0.0118904387571813,
            0.5606966208214004,
            -0.025838485926999777,
            0.773087494880138,
            0.630262591055456,
            0.7002474198747913,
            0.778999950578241,
            0.4043423475460592,
            1.0481499151418765,
            1.024420643855204,
            0.3917042134026587,
            0.15083100568255442,
            1.0510493114043127,
            0.4272099184048064,
        ],
        "sum": 7629.937022938472,
        "abs_sum": 7665.444826533574,
        "ramp_sum": 3808.8271938716125,
    },
    "restormer_tiny_local": {
        "input": [1, 72, 120],
        "train_size": 32,
        "top_left": [
            0.7598009388870672,
            0.5127442381141635,
            0.30845448710636525,
            -0.009490777794904981,
            0.41695668604553854,
            -0.15511140091469092,
            0.7441021130623902,
            -0.10102321935883274,
            0.024646947570787614,
            0.6905144728539001,
            0.7465508201420831,
            -0.054361864983349106,
            0.8291899735494634,
            0.7961614989139054,
            0.24651312020196303,
            0.4400377312027153,
            0.7608956097405868,
            0.44740228470215737,
        ],
        "bottom_right": [
            -0.01177786628507893,
            0.5874208101859668,
            0.039715502283312124,
            0.5908228939725735,
            0.46418043966060074,
            0.1816440337152441,
            -0.26059165372327403,
            0.9843274235953351,
            0.6472155962642145,
            0.7559285777744421,
            0.04681860162705476,
            0.4236304637223066,
            0.3633287626531783,
            0.6177351435393483,
            0.18112650544360753,
            0.22675453852506589,
            0.6727216256890001,
            0.10129732359485007,
        ],
        "sum": 9495.032586733756,
        "abs_sum": 10726.274895773055,
        "ramp_sum": 4777.962660651765,
    },
    "attention_720x1280": {
        "input": [1, 720, 1280],
        "kernel": 384,
        "top_left": [
            -0.003134118607309434,
            -0.015520452666225967,
            -0.0016265647746638372,
            -0.0005322189776664171,
            -0.0032514972824734044,
            -0.010657241227688123,
            0.0039422046699256,
            0.018939220760624674,
            0.002089747159076946,
            0.0010590540246524635,
            0.004439734260647818,
            0.012970589540249567,
            0.004374804331617707,
            0.023006293471182344,
            0.002567875043767321,
            -0.0011855726194670907,
            0.0033818828206425423,
            0.015209568584581912,
        ],
        "bottom_right": [
            -0.010211429068357059,
            -0.018334960346729302,
            -0.006293998896138572,
            0.008106902444176275,
            0.017551574995700932,
            0.015298896486394284,
            0.012814736753344396,
            0.022483219042521513,
            0.007831752131561813,
            -0.009878956451520706,
            -0.021154793173006642,
            -0.018533809510384743,
            0.013311272954697929,
            0.026622892648082475,
            0.009864886486982704,
            -0.011692021460240459,
            -0.026047789988739717,
            -0.02206298425432866,
        ],
        "sum": -45327.99966824761,
        "abs_sum": 427479.8816945929,
        "ramp_sum": -22513.284627345947,
    },
}


def _seeded(name: str) -> torch.nn.Module:
    model = create_model(name).double().eval()
    model.load_state_dict(seeded_state(model), strict=True)
    return model


@pytest.mark.parametrize("name", ["restormer_tiny", pytest.param("restormer", marks=pytest.mark.slow)])
def test_parameter_count_and_release_keys(name: str) -> None:
    model = create_model(name)
    assert model.num_parameters == PARAMS[name]
    assert list(model.state_dict()) == _release_keys(*_LAYOUT[name])


@pytest.mark.parametrize("name", ["restormer_tiny", pytest.param("restormer", marks=pytest.mark.slow)])
def test_matches_release_output(name: str) -> None:
    with torch.no_grad():
        out = _seeded(name)(seeded_input(*GOLDEN[name]["input"]))
    check_summary(out, GOLDEN[name])


def test_release_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """``motion_deblurring.pth`` is BasicSR's ``{"params": state_dict}``."""
    model = create_model("restormer_tiny")
    state = {k: v.float() for k, v in seeded_state(model).items()}
    path = tmp_path / "motion_deblurring.pth"
    torch.save({"params": state}, path)
    fresh = create_model("restormer_tiny")
    load_checkpoint(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    torch.save({"params": {**state, "extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=r"extra\.weight"):
        load_checkpoint(create_model("restormer_tiny"), path)


def test_reflect_pads_to_eight_as_the_test_script() -> None:
    """``Motion_Deblurring/test.py``: reflect padding to a multiple of 8, cropped back."""
    model = _seeded("restormer_tiny")
    lq = seeded_input(1, 29, 43)
    padded = torch.nn.functional.pad(lq, (0, 5, 0, 3), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.restore(padded)[..., :29, :43], rtol=0, atol=0)


def test_tlc_windows_follow_tlc() -> None:
    """TLC's windows per level and its overlapping-window attention on the whole tiny model (72x120 input)."""
    local = to_local(_seeded("restormer_tiny"), (32, 32))
    kernels = [m.windows.kernel_size for m in local.modules() if isinstance(m, Attention)]
    assert kernels == [(48, 48), (24, 24), (12, 12), (6, 6), (12, 12), (24, 24), (48, 48), (48, 48)]
    assert count_local_layers(local) == 8
    golden = GOLDEN["restormer_tiny_local"]
    with torch.no_grad():
        check_summary(local(seeded_input(*golden["input"])), golden)


def test_tlc_leaves_the_training_size_unchanged() -> None:
    model = _seeded("restormer_tiny")
    local = to_local(model, (32, 32))
    lq = seeded_input(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(local(lq), model(lq), rtol=0, atol=0)
        assert not torch.allclose(local(seeded_input(1, 72, 120)), model(seeded_input(1, 72, 120)), atol=1e-6)


def test_local_attention_at_720x1280_equals_tlc() -> None:
    """Level 1 of the full model after TLC's conversion for 256-px crops: 384-px windows on a 720x1280 map, 2 x 4
    windows (rows [0, 336], columns [0, 299, 598, 896]); within 1e-5 of TLC's code (measured: bit-identical)."""
    attention = Attention(48, 1, False).double().eval()
    attention.load_state_dict(seeded_state(attention), strict=True)
    attention.windows = LocalWindows((384, 384))
    golden = GOLDEN["attention_720x1280"]
    with torch.no_grad():
        check_summary(attention(seeded_input(1, 720, 1280, c=48)), golden, atol=1e-5)
    assert window_starts(720, 384) == [0, 336] and window_starts(1280, 384) == [0, 299, 598, 896]


@pytest.mark.parametrize(
    ("size", "kernel", "starts"),
    [(10, 4, [0, 3, 6]), (8, 4, [0, 4]), (5, 8, [0]), (9, 9, [0]), (7, 1, [0, 1, 2, 3, 4, 5, 6])],
)
def test_window_starts(size: int, kernel: int, starts: list[int]) -> None:
    assert window_starts(size, kernel) == starts


def test_local_windows_batch_equals_one_image_at_a_time() -> None:
    attention = Attention(8, 2, False).double().eval()
    attention.load_state_dict(seeded_state(attention), strict=True)
    attention.windows = LocalWindows((6, 10))
    x = seeded_input(3, 15, 23, c=8)
    with torch.no_grad():
        batched = attention(x)
        single = torch.cat([attention(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-14)
        attention.windows = LocalWindows((15, 23))  # one window: the global attention
        whole = attention(x)
        attention.windows = None
        torch.testing.assert_close(whole, attention(x), rtol=0, atol=0)
    assert not torch.allclose(batched, whole, atol=1e-6)


@pytest.mark.slow
def test_full_model_windows_are_restormer_locals() -> None:
    """TLC's RestormerLocal for 256-px training crops: base 384, so 384/192/96/48 px windows by level."""
    local = to_local(create_model("restormer").eval(), (256, 256))
    kernels = [m.windows.kernel_size[0] for m in local.modules() if isinstance(m, Attention)]
    assert kernels == [384] * 4 + [192] * 6 + [96] * 6 + [48] * 8 + [96] * 6 + [192] * 6 + [384] * 8
