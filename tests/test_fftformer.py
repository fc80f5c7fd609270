"""FFTformer (models/fftformer.py): sizes, the release's keys, parity with the release's network, its loss.

The golden values were computed once with the release's own code (kkkls/FFTformer@01306b5
``basicsr/models/archs/fftformer_arch.py``, ``fftformer(**network_g)``; the tiny variant as ``dim=8,
num_blocks=[1, 1, 1], num_refinement_blocks=1``) on the CPU, with the weights of ``tests.conftest.seeded_state``
loaded strictly (our keys are the release's) and the inputs of ``tests.conftest.seeded_input``, twice:
    * float32, the release as it is (its ``.float()`` before each FFT is then the identity);
    * float64, with the one shim ``Tensor.float`` made the identity for the run, so that the patches stay float64 as
      ours do (see the model's docstring).
Against the release in the same process the outputs were bit-identical in both precisions. Neither the network nor
the release files are needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import TrainOutput, create_model, load_checkpoint
from models.losses import fft_l1
from tests.conftest import check_summary, seeded_input, seeded_state

PARAMS = {"fftformer": 16_560_474, "fftformer_tiny": 113_230}


def _block_keys(prefix: str, att: bool) -> list[str]:
    """``TransformerBlock``'s keys in registration order (the DFFN's own ``fft`` first, then its convs)."""
    keys = []
    if att:
        keys += [f"{prefix}.norm1.body.weight", f"{prefix}.norm1.body.bias"]
        keys += [f"{prefix}.attn.{n}.weight" for n in ("to_hidden", "to_hidden_dw", "project_out")]
        keys += [f"{prefix}.attn.norm.body.weight", f"{prefix}.attn.norm.body.bias"]
    keys += [f"{prefix}.norm2.body.weight", f"{prefix}.norm2.body.bias", f"{prefix}.ffn.fft"]
    return keys + [f"{prefix}.ffn.{n}.weight" for n in ("project_in", "dwconv", "project_out")]


def _release_keys(blocks: tuple[int, int, int], refinement: int) -> list[str]:
    """``fftformer``'s keys in the release's registration order."""

    def level(name: str, n: int, att: bool) -> list[str]:
        return [k for i in range(n) for k in _block_keys(f"{name}.{i}", att)]

    def fuse(name: str) -> list[str]:
        return _block_keys(f"{name}.att_channel", False) + [
            f"{name}.{c}.{p}" for c in ("conv", "conv2") for p in ("weight", "bias")
        ]

    keys = ["patch_embed.proj.weight", *level("encoder_level1", blocks[0], False), "down1_2.body.1.weight"]
    keys += [*level("encoder_level2", blocks[1], False), "down2_3.body.1.weight"]
    keys += [*level("encoder_level3", blocks[2], False), *level("decoder_level3", blocks[2], True)]
    keys += ["up3_2.body.1.weight", "reduce_chan_level2.weight", *level("decoder_level2", blocks[1], True)]
    keys += ["up2_1.body.1.weight", *level("decoder_level1", blocks[0], True), *level("refinement", refinement, True)]
    return [*keys, *fuse("fuse2"), *fuse("fuse1"), "output.weight"]


_LAYOUT = {"fftformer": ((6, 6, 12), 4), "fftformer_tiny": ((1, 1, 1), 1)}


# Release output summaries (see ``tests.conftest.check_summary``) for ``seeded_input(*input)``, per precision.
GOLDEN = {
    "float64": {
        "fftformer_tiny": {
            "input": [2, 32, 64],
            "top_left": [
                1.0780461470530496,
                0.747277694865267,
                0.5196563421343758,
                0.7488326060188921,
                0.38356179499359727,
                0.5653043012470343,
                0.8209754451426204,
                0.23815737066697953,
                0.13899738705776044,
                0.8421748103041307,
                0.9192389856530886,
                0.8198298335940382,
                0.6456946490687178,
                0.37704180851009755,
                0.6089618535001955,
                -0.2061799390896269,
                0.2547870987819838,
                0.06423891517118646,
            ],
            "bottom_right": [
                0.26698711167172207,
                0.8387827312812418,
                0.5519008493840936,
                0.7781352832810963,
                0.7836817169135292,
                0.2329132112317534,
                0.8290558207358305,
                0.1521517609985472,
                -0.06298944945082874,
                0.48176686014341485,
                0.10509692904633172,
                0.385554822412312,
                1.0806698448908187,
                0.9071009499743179,
                0.39323659566308106,
                -0.01235065550869209,
                1.1907399721514724,
                0.31923713309043616,
            ],
            "sum": 6804.733282378151,
            "abs_sum": 6982.080288065234,
            "ramp_sum": 3382.5502364731265,
        },
        "fftformer": {
            "input": [1, 64, 32],
            "top_left": [
                0.9232362763747917,
                0.6740406928623153,
                0.4149688971955875,
                0.5122564024083676,
                0.17530296107805685,
                0.5096853085206977,
                1.0041854959461596,
                0.4067895235584722,
                0.5115322681809722,
                0.5334943433827325,
                1.1239672738302606,
                0.24302249311419452,
                0.8796372321185295,
                0.603449909381327,
                0.7579597581103346,
                0.8443784483725542,
                0.1594642367400932,
                0.38739746867087876,
            ],
            "bottom_right": [
                0.2268444053983472,
                0.5338428679697853,
                -0.17893896983654872,
                0.9276741215099006,
                0.4372191861678262,
                0.7311072839829897,
                0.5969659729678235,
                0.24318585328691544,
                0.28247923559555516,
                0.29770151358422825,
                -0.11892981333686145,
                0.43725432609928977,
                0.5628900203327413,
                0.1097205915985019,
                0.5452415624099289,
                0.3733370630940422,
                0.7979875376478698,
                0.3957189135487454,
            ],
            "sum": 3320.588953888644,
            "abs_sum": 3332.7246427655764,
            "ramp_sum": 1650.3815075897787,
        },
    },
    "float32": {
        "fftformer_tiny": {
            "input": [2, 32, 64],
            "top_left": [
                1.078046202659607,
                0.7472776770591736,
                0.5196563601493835,
                0.748832643032074,
                0.38356178998947144,
                0.5653042793273926,
                0.8209754228591919,
                0.23815737664699554,
                0.1389973908662796,
                0.842174768447876,
                0.9192389249801636,
                0.8198298811912537,
                0.6456946134567261,
                0.3770418167114258,
                0.608961820602417,
                -0.20617997646331787,
                0.2547870874404907,
                0.06423897296190262,
            ],
            "bottom_right": [
                0.26698702573776245,
                0.8387826681137085,
                0.5519009232521057,
                0.7781352400779724,
                0.7836816906929016,
                0.23291319608688354,
                0.8290557861328125,
                0.15215164422988892,
                -0.0629894882440567,
                0.48176687955856323,
                0.10509692132472992,
                0.38555482029914856,
                1.0806697607040405,
                0.9071009159088135,
                0.39323654770851135,
                -0.012350734323263168,
                1.1907398700714111,
                0.3192371129989624,
            ],
            "sum": 6804.733182954835,
            "abs_sum": 6982.080174034694,
            "ramp_sum": 3382.550186853575,
        },
        "fftformer": {
            "input": [1, 64, 32],
            "top_left": [
                0.9232362508773804,
                0.6740407347679138,
                0.41496890783309937,
                0.5122565031051636,
                0.1753029227256775,
                0.5096853375434875,
                1.0041855573654175,
                0.40678948163986206,
                0.5115323066711426,
                0.5334943532943726,
                1.1239672899246216,
                0.24302251636981964,
                0.8796372413635254,
                0.6034499406814575,
                0.75795978307724,
                0.8443784117698669,
                0.15946422517299652,
                0.3873974084854126,
            ],
            "bottom_right": [
                0.22684437036514282,
                0.5338428616523743,
                -0.17893896996974945,
                0.9276741147041321,
                0.43721920251846313,
                0.7311072945594788,
                0.5969659686088562,
                0.24318581819534302,
                0.2824792265892029,
                0.29770147800445557,
                -0.11892985552549362,
                0.4372543692588806,
                0.5628900527954102,
                0.10972066223621368,
                0.5452415943145752,
                0.373337060213089,
                0.7979875206947327,
                0.39571890234947205,
            ],
            "sum": 3320.588908118778,
            "abs_sum": 3332.7245976607082,
            "ramp_sum": 1650.3814873503609,
        },
    },
}


@pytest.mark.parametrize("name", ["fftformer_tiny", pytest.param("fftformer", marks=pytest.mark.slow)])
def test_parameter_count_and_release_keys(name: str) -> None:
    model = create_model(name)
    assert model.num_parameters == PARAMS[name]
    assert list(model.state_dict()) == _release_keys(*_LAYOUT[name])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["fftformer_tiny", pytest.param("fftformer", marks=pytest.mark.slow)])
def test_matches_release_output(name: str, dtype: torch.dtype) -> None:
    golden = GOLDEN[str(dtype).removeprefix("torch.")][name]
    model = create_model(name).eval().to(dtype)
    model.load_state_dict(seeded_state(model), strict=True)  # float64 values, rounded into float32 parameters
    with torch.no_grad():
        out = model(seeded_input(*golden["input"]).to(dtype))
    # float32: the release's own precision, and our code runs the same operations (measured: bit-identical).
    check_summary(out, golden, atol=1e-10 if dtype == torch.float64 else 1e-4)


def test_release_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """``pretrain_model/fftformer_GoPro.pth`` is a bare state dict (``test.py``: ``load_state_dict(state_dict)``)."""
    model = create_model("fftformer_tiny")
    state = {k: v.float() for k, v in seeded_state(model).items()}
    path = tmp_path / "fftformer_GoPro.pth"
    torch.save(state, path)
    fresh = create_model("fftformer_tiny")
    load_checkpoint(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_reflect_pads_to_thirty_two_as_the_test_script() -> None:
    model = create_model("fftformer_tiny").double().eval()
    lq = seeded_input(1, 29, 43)
    padded = torch.nn.functional.pad(lq, (0, 21, 0, 3), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.restore(padded)[..., :29, :43], rtol=0, atol=0)


def test_half_precision_ffts_run_in_float32() -> None:
    """The release's ``.float()``: under bfloat16 the patches' spectra are float32 (no half-precision FFT)."""
    model = create_model("fftformer_tiny").eval()
    lq = seeded_input(1, 32, 32).float()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(lq)
    with torch.no_grad():
        ref = model(lq)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max().item() < 0.1


def test_loss_is_l1_plus_a_tenth_of_the_fft_loss() -> None:
    model = create_model("fftformer_tiny")
    gen = torch.Generator().manual_seed(2)
    gt = torch.rand(2, 3, 16, 16, generator=gen)
    pred = gt + 0.01
    terms = model.loss(TrainOutput(restored=pred), gt)
    # A constant offset d: L1 = d; the spectrum differs only at DC, by d * H * W (real part), over 2 x H x W values.
    assert terms["l1"].item() == pytest.approx(0.01, rel=1e-4)
    assert terms["fft"].item() == pytest.approx(0.01 * 16 * 16 / (2 * 16 * 16), rel=1e-4)
    assert terms["total"].item() == pytest.approx(terms["l1"].item() + 0.1 * fft_l1(pred, gt).item(), rel=1e-6)
