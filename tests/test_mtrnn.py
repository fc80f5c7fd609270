"""MT-RNN (models/mtrnn.py): sizes, the release's bare checkpoint, parity with the release's recurrence, training.

The golden values were computed once with the release's own code (Dong1P/MTRNN@e27c29b ``mtrnn.py``, class
``MTRNN``, unmodified), driven exactly as the loop of its ``test.py`` (l. 21-36: the 0-255 input as ``lr``, ``lr_d =
feature_1 = feature_2 = lr.clone()``, ``iter_num`` iterations of ``model([lr, lr_d, feature_1, feature_2])`` with
``.data`` between them, the last ``lr_d`` the result), in float64 on the CPU, in eval mode, with the weights of
``_seeded_state`` (the release's and our keys are identical) and the input of ``_seeded_input``. The goldens are the
release's 0-255 output; ours is compared after x 255. Against the release's code the maximum absolute difference was
1.4e-14 (0-255 scale) for 6 iterations. Neither the network nor the release files are needed here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from models import CheckpointError, create_model, load_checkpoint
from models.base import TrainOutput, pad_to_multiple
from models.mtrnn import MTRNN, RGB_MEAN, MTRNNTrainOutput
from tests.conftest import seeded_state


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights the golden values were computed with (``tests.conftest.seeded_state``)."""
    return seeded_state(model, seed)


def _seeded_input() -> torch.Tensor:
    """(1, 3, 64, 64) 8-bit values 0-255 as float64 (what ``test.py`` feeds): ``torch.randint`` seeded 0."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (1, 3, 64, 64), generator=gen).to(torch.float64)


# Release output (the last ``lr_d`` of test.py's loop, 0-255 scale) for _seeded_input under _seeded_state.
GOLDEN = {
    6: {
        "top_left": [  # out[0, :, :2, :3].flatten()
            -17.469414907059495,
            -67.59352711789393,
            -39.46596096860074,
            -65.61184287997116,
            -48.5503050298222,
            -65.40089573161615,
            4.540065520756649,
            100.23647268987159,
            27.72628480482276,
            108.22820824503452,
            10.08198121891229,
            57.46317613223853,
            -7.129732868240376,
            -32.81930704335783,
            -27.429363568374786,
            -15.178467109347068,
            -42.75280229555047,
            -43.18949149482394,
        ],
        "bottom_right": [  # out[0, :, -2:, -3:].flatten()
            -49.88878046384486,
            -49.255737926565445,
            -30.219941546408926,
            -31.01184082160627,
            -34.05513662842651,
            -38.28096311152492,
            84.81469724770956,
            77.51491392899521,
            -17.02439296442791,
            49.563461166742485,
            49.98379923503439,
            62.47788521445633,
            -2.056063319183646,
            -11.978589158038863,
            -41.33655920200334,
            -2.327143401392976,
            -13.132674094774389,
            -11.5967422158612,
        ],
        "ramp_sum": -60896.55517342084,
        "sum": -174442.242736289,
        "abs_sum": 524827.4959251126,
    },
    2: {
        "top_left": [
            -17.5139409166189,
            -67.79123579324008,
            -39.66577969715357,
            -65.66098358999398,
            -48.535883187750024,
            -65.28154977483133,
            4.578643685122639,
            100.57046831715094,
            28.97344736483523,
            108.32879007553328,
            10.913746233323472,
            56.88501903223789,
            -7.2631923323408465,
            -33.29141566816252,
            -26.988315139430433,
            -15.908939217471659,
            -43.07624932500612,
            -44.391987742274836,
        ],
        "bottom_right": [
            -48.1278553234005,
            -50.220287010228354,
            -29.64753217897041,
            -31.366646981656285,
            -34.57500709772975,
            -37.76295055989699,
            80.9727112783935,
            79.7488507176847,
            -16.590726186329455,
            49.320743703078044,
            51.06288937927901,
            62.357184251415816,
            -3.7499877164727424,
            -11.790315266713277,
            -40.69088920871733,
            -3.4041525571156406,
            -12.65809637108363,
            -11.404159730385656,
        ],
        "ramp_sum": -60204.101499759694,
        "sum": -172169.94277887838,
        "abs_sum": 530263.4262410434,
    },
}

RELEASE_FIRST_KEYS = [
    "sub_mean.weight",
    "sub_mean.bias",
    "conv1_1.0.weight",
    "conv1_1.0.bias",
    "conv1_2.stem.0.weight",
    "conv1_2.stem.0.bias",
    "conv1_2.stem.2.weight",
    "conv1_2.stem.2.bias",
]
RELEASE_LAST_KEYS = ["img_prd.0.weight", "img_prd.0.bias", "add_mean.weight", "add_mean.bias"]


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "channels"), [("mtrnn", 2_635_547, 32), ("mtrnn_tiny", 165_851, 8)])
def test_parameter_counts_and_pad_multiple(name: str, params: int, channels: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert model.pad_multiple == 4 and model.pad_mode == "reflect" and model.iterations == 6
    state = model.state_dict()
    assert len(state) == 96
    assert list(state)[:8] == RELEASE_FIRST_KEYS and list(state)[-4:] == RELEASE_LAST_KEYS
    assert state["conv1_1.0.weight"].shape == (channels, 6, 3, 3)
    assert state["conv2_c.0.weight"].shape == (2 * channels, 4 * channels, 1, 1)
    assert state["conv5_1.0.weight"].shape == (4 * channels, 2 * channels, 4, 4)  # ConvTranspose2d: (in, out, k, k)
    # The two MeanShift convolutions (24 values) are parameters, frozen as in the release.
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]


def test_mean_shift_is_the_releases_div2k_mean_at_255() -> None:
    model = create_model("mtrnn_tiny")
    eye = torch.eye(3).view(3, 3, 1, 1)
    mean = 255 * torch.tensor(RGB_MEAN)
    torch.testing.assert_close(model.sub_mean.weight, eye, rtol=0, atol=0)
    torch.testing.assert_close(model.add_mean.weight, eye, rtol=0, atol=0)
    torch.testing.assert_close(model.sub_mean.bias, -mean, rtol=0, atol=0)
    torch.testing.assert_close(model.add_mean.bias, mean, rtol=0, atol=0)


def test_constructor_checks_its_arguments() -> None:
    for bad in ({"channels": 0}, {"iterations": 0}):
        with pytest.raises(ValueError, match="MTRNN"):
            MTRNN(**bad)
    assert create_model("mtrnn_tiny", iterations=3).iterations == 3


# --- the release's checkpoint --------------------------------------------------------------------------------------


def test_release_bare_state_dict_loads_strictly(tmp_path: Path) -> None:
    """``model_best.pt`` is ``torch.save(model.state_dict())``: a bare state dict, no prefix (``test.py`` l. 14)."""
    torch.manual_seed(0)
    source = create_model("mtrnn_tiny")
    source.load_state_dict(_seeded_state(source), strict=True)
    path = tmp_path / "model_best.pt"
    torch.save(source.state_dict(), path)
    model = load_checkpoint(create_model("mtrnn_tiny"), path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert not model.sub_mean.weight.requires_grad


def test_a_width_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model_best.pt"
    torch.save(create_model("mtrnn_tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match="mtrnn"):
        load_checkpoint(create_model("mtrnn"), path)


# --- parity with the release ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [6, 2])
def test_forward_matches_the_release_in_float64(iterations: int) -> None:
    model = create_model("mtrnn", iterations=iterations).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    with torch.no_grad():
        out = model(_seeded_input() / 255) * 255
    golden = GOLDEN[iterations]
    assert out.shape == (1, 3, 64, 64)
    assert out[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert out[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape) / out.numel()
    assert (out * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)


def test_recurrence_carries_the_estimate_and_both_feature_maps() -> None:
    """Iteration k + 1 is the cell on iteration k's estimate and feature maps; the first uses its own entry maps."""
    torch.manual_seed(0)
    model = create_model("mtrnn_tiny", iterations=3).double().eval()
    lq = torch.rand(1, 3, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        x_in = model.sub_mean(lq * 255)
        x_d, f1, f2 = lq * 255, None, None
        for _ in range(3):
            out, f1, f2 = model.cell(x_in, model.sub_mean(x_d), f1, f2)
            assert f1.shape == (1, 16, 8, 12) and f2.shape == (1, 32, 4, 6)
            x_d = model.add_mean(out)
        torch.testing.assert_close(model(lq), x_d / 255, rtol=0, atol=0)


# --- any size, training --------------------------------------------------------------------------------------------


def test_odd_size_keeps_shape_and_is_the_reflect_padded_restoration() -> None:
    torch.manual_seed(0)
    model = create_model("mtrnn_tiny").eval()
    lq = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        padded, _ = pad_to_multiple(lq, 4, "reflect")
        assert padded.shape[-2:] == (40, 56)
        expected = model.restore(padded)[..., :37, :53]
        even = torch.rand(1, 3, 32, 48)
        torch.testing.assert_close(model(even), model.restore(even), rtol=0, atol=0)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_forward_train_and_per_iteration_l1_loss() -> None:
    torch.manual_seed(0)
    model = create_model("mtrnn_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    start = time.perf_counter()
    out = model.forward_train(lq, gt)
    terms = model.loss(out, gt)
    terms["total"].backward()
    assert time.perf_counter() - start < 2.0
    assert type(out) is MTRNNTrainOutput and len(out.iterations) == 6
    assert out.restored is out.iterations[-1] and out.restored.shape == lq.shape
    assert set(terms) == {"l1_final", "total"}
    expected = torch.stack([(est - gt).abs().mean() for est in out.iterations]).mean()
    torch.testing.assert_close(terms["total"], expected)
    torch.testing.assert_close(terms["l1_final"], (out.restored - gt).abs().mean())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.forward_train(lq, gt).restored, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        model.forward_train(torch.rand(1, 3, 30, 32), gt)


def test_iterations_are_detached_from_each_other() -> None:
    """As the release's loop (``.data``): the last estimate's gradient reaches the input only through the blurry
    image fed to that iteration, not through the carried estimate and feature maps."""
    torch.manual_seed(0)
    model = create_model("mtrnn_tiny", iterations=2).double()
    lq = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    out = model.forward_train(lq, lq.detach())
    (grad,) = torch.autograd.grad(out.iterations[-1].sum(), lq)
    lq2 = lq.detach().clone().requires_grad_(True)
    with torch.no_grad():
        x_in0 = model.sub_mean(lq2 * 255)
        first, f1, f2 = model.cell(x_in0, x_in0, None, None)
        first = model.add_mean(first)
    second, _, _ = model.cell(model.sub_mean(lq2 * 255), model.sub_mean(first), f1, f2)
    (expected,) = torch.autograd.grad((model.add_mean(second) / 255).sum(), lq2)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


def test_loss_needs_forward_train_output() -> None:
    model = create_model("mtrnn_tiny")
    with pytest.raises(TypeError, match="MTRNNTrainOutput"):
        model.loss(TrainOutput(restored=torch.zeros(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4))
