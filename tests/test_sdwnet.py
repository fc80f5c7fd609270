"""SDWNet (models/sdwnet.py): sizes, the release's checkpoint layout, parity with the release's network and loss.

The golden values were computed once with the release's own code (FlyEgle/SDWNet@8e30226, class
``AtrousNet_SRCNN_tail`` of ``model/NTIRE2021_Deblur/uniA_ELU/model_stage1_dual_branch_tail.py`` and its
``layerlib_stage1``, built as ``AtrousNet_SRCNN_tail(3, 3, num_blocks=16, d_mult=32)`` like ``train_goprol.py`` /
``inference_ddp.py``, and with ``num_blocks=2, d_mult=8`` for the tiny variant), in float64 on the CPU, with the
weights of ``_seeded_state`` loaded strictly (our keys are the release's) and the input of ``_seeded_input`` fed as
the release's ``ToTensor2`` does, scaled to 0-255, the output divided by 255. The one shim: the release's
``iwt_init`` allocates ``torch.zeros(...).float().cuda()``; the driver made ``Tensor.float``/``Tensor.cuda`` the
identity and the default dtype float64 for the run (on a CUDA float32 run, ``.float()`` is the identity anyway).
Against the release's network in the same process, the outputs were bit-identical (maximum absolute difference 0)
in float64 and float32, for batch 2 on 40x56 inputs; the loss golden is the release's ``L1_Charbonnier(eps=0.001)``
+ ``1 - SSIM()`` of ``loss/generator_loss.py`` on 0-255 images. No weights are released (issues #1, #7), so there is
no test on real weights. Neither the network nor the release files are needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import TrainOutput, create_model, load_checkpoint
from models.sdwnet import MIN_SIDE, dwt, iwt, release_ssim
from tests.conftest import seeded_state

PARAMS = {"sdwnet": 10_748_803, "sdwnet_tiny": 424_819}


def _release_keys(num_blocks: int) -> list[str]:
    """The release's state-dict keys, in its registration order."""
    keys = ["downsampling_layers.0.conv.weight", "downsampling_layers.1.conv.weight"]
    keys += [f"SRCNN.conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    for b in range(num_blocks):
        if b == 0:
            keys.append("blocks.0.projection.conv.weight")
        keys += [f"blocks.{b}.atrous_layers.{j}.conv.weight" for j in range(4)]
        keys.append(f"blocks.{b}.conv1.conv.weight")
    return [*keys, "output_layer.0.conv.weight", "output_layer.1.conv.weight"]


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights the golden values were computed with (``tests.conftest.seeded_state``)."""
    return seeded_state(model, seed)


def _seeded_input(n: int, h: int, w: int) -> torch.Tensor:
    """(n, 3, h, w) float64 in [0, 1): ``torch.rand`` from a generator seeded 0."""
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


# Release output / 255 for _seeded_input under _seeded_state: top_left = out[0, :, :2, :3], bottom_right =
# out[-1, :, -2:, -3:] (flattened), ramp_sum = sum(out * ramp), ramp = arange(H * W).reshape(H, W) / (H * W).
GOLDEN = {
    "sdwnet": {
        "input": (1, 64, 64),
        "top_left": [
            0.9874250015452349,
            0.7502551208502368,
            0.49243563861888917,
            0.678750918631746,
            0.1820532947476818,
            0.46513371239534534,
            1.236889994219627,
            0.904587699846967,
            1.0556299472978774,
            0.4046845392803131,
            0.5753294215754094,
            0.4463909995170491,
            0.45855257910380814,
            0.16073184605795454,
            0.9168608161800635,
            0.30664390326730606,
            0.8672377890363162,
            0.843085048249019,
        ],
        "bottom_right": [
            0.32931719859996156,
            0.7620078572787237,
            1.0835132499662978,
            0.7132008620577764,
            0.22290703995826527,
            0.7857392227290412,
            0.3999921827904747,
            1.1011594290442648,
            0.998277600900603,
            1.0075315991000964,
            1.0892669932506018,
            0.637466005060137,
            0.7363944015579934,
            0.6653502676256692,
            0.04008811553935461,
            -0.029592053810037888,
            0.8644895008486901,
            0.1187125920218736,
        ],
        "sum": 7739.559707703756,
        "abs_sum": 7795.404341949618,
        "ramp_sum": 3902.768746266133,
    },
    "sdwnet_tiny": {
        "input": (2, 32, 48),
        "top_left": [
            1.018572186664527,
            0.7452386951933953,
            0.5075695024676737,
            1.0425310746068621,
            0.8960401693411321,
            0.8039972504957705,
            0.8099411764690828,
            0.5635433079016925,
            0.19835506161258312,
            0.8728045564749362,
            0.6538094083956575,
            0.6049262541082562,
            0.39991969061184124,
            0.8307502518303607,
            -0.024910416228743414,
            0.07484757809188258,
            0.7848452086663975,
            0.46858026364347705,
        ],
        "bottom_right": [
            0.7516077783394663,
            0.34765731096151653,
            0.6547810076443837,
            0.5945532595994723,
            0.9702203347249594,
            0.4969836516725622,
            0.2488649476008121,
            0.6178226864274464,
            0.3124443750513824,
            0.8155204611311112,
            0.08220389621073534,
            0.48063717290225366,
            0.19152650695917015,
            0.14006438150605224,
            0.45860221776134674,
            0.40131002740004407,
            0.08600176839091078,
            0.6923963270664661,
        ],
        "sum": 4843.600873292568,
        "abs_sum": 4854.9840032011525,
        "ramp_sum": 2415.047978609411,
    },
}

# The release's training loss on a fixed pair (see _loss_pair): L1_Charbonnier(eps=0.001)(255 p, 255 g) and
# SSIM()(255 p, 255 g) of loss/generator_loss.py, total = charbonnier + 1 * (1 - ssim).
LOSS_GOLDEN = {"charbonnier": 20.3276375555036, "ssim": 0.9393503663745199, "total": 20.38828718912908}


def _loss_pair() -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    noise = torch.randn(2, 3, 24, 40, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return pred, pred + 0.1 * noise


@pytest.mark.parametrize("name", ["sdwnet_tiny", pytest.param("sdwnet", marks=pytest.mark.slow)])
def test_parameter_count_and_release_keys(name: str) -> None:
    model = create_model(name)
    assert model.num_parameters == PARAMS[name]
    assert list(model.state_dict()) == _release_keys(16 if name == "sdwnet" else 2)


@pytest.mark.parametrize("name", ["sdwnet_tiny", pytest.param("sdwnet", marks=pytest.mark.slow)])
def test_matches_release_output(name: str) -> None:
    golden = GOLDEN[name]
    model = create_model(name).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    x = _seeded_input(*golden["input"])
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape
    h, w = out.shape[-2:]
    ramp = torch.arange(h * w, dtype=torch.float64).reshape(h, w) / (h * w)
    got = {
        "top_left": out[0, :, :2, :3].flatten(),
        "bottom_right": out[-1, :, -2:, -3:].flatten(),
        "sum": out.sum(),
        "abs_sum": out.abs().sum(),
        "ramp_sum": (out * ramp).sum(),
    }
    for key, value in got.items():
        expected = torch.tensor(golden[key], dtype=torch.float64)
        assert torch.allclose(value, expected, rtol=0, atol=1e-10), key


def test_loss_matches_release() -> None:
    model = create_model("sdwnet_tiny")
    pred, gt = _loss_pair()
    terms = model.loss(TrainOutput(restored=pred), gt)
    for key, value in LOSS_GOLDEN.items():
        assert terms[key].item() == pytest.approx(value, abs=1e-10), key


def test_ssim_of_identical_images_is_one() -> None:
    x = torch.rand(1, 3, 20, 20, dtype=torch.float64) * 255
    assert release_ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_wavelet_layout_and_inverse() -> None:
    x = torch.rand(2, 5, 6, 8, dtype=torch.float64)
    bands = dwt(x)
    assert bands.shape == (8, 5, 3, 4)
    # LL of image 1 is the 2x2 sum / 2; the sub-bands are stacked along the batch axis, band-major.
    assert torch.allclose(
        bands[1], (x[1, :, 0::2, 0::2] + x[1, :, 1::2, 0::2] + x[1, :, 0::2, 1::2] + x[1, :, 1::2, 1::2]) / 2
    )
    assert torch.allclose(iwt(bands), x, atol=1e-14)


def test_release_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """``train_goprol.py`` saves ``{"epoch", "state_dict", "optimizer"}``, ``module.`` stripped."""
    model = create_model("sdwnet_tiny")
    state = {k: v.float() for k, v in _seeded_state(model).items()}
    path = tmp_path / "AtrousNet_SRCNN_tail_best_psnr_30.0.pth"
    torch.save({"epoch": 500, "state_dict": state, "optimizer": {}}, path)
    fresh = create_model("sdwnet_tiny")
    load_checkpoint(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    # The same weights under DataParallel/DDP's prefix also load.
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    load_checkpoint(create_model("sdwnet_tiny"), path)


@pytest.mark.parametrize("size", [(6, 10), (16, 16), (23, 37), (18, 18)])
def test_small_and_odd_inputs(size: tuple[int, int]) -> None:
    model = create_model("sdwnet_tiny").eval()
    lq = torch.rand(1, 3, *size)
    with torch.no_grad():
        assert model(lq).shape == lq.shape
    assert MIN_SIDE == 18


def test_restore_refuses_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even"):
        create_model("sdwnet_tiny").restore(torch.rand(1, 3, 20, 21))


def test_forward_train_and_backward() -> None:
    model = create_model("sdwnet_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    terms = model.loss(out, gt)
    assert set(terms) == {"charbonnier", "ssim", "total"}
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
