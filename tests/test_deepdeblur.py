"""DeepDeblur MSResNet (models/deepdeblur.py): sizes, the release's ``{'G': sd}`` file, pyramid, release parity.

The golden values were computed once with the release's own code (SeungjunNah/DeepDeblur-PyTorch@26047f7
``src/model/MSResNet.py``, ``ResNet.py``, ``common.py``, and ``src/data/common.py`` for the input pyramid), in float64:
the release's ``MSResNet`` (``rgb_range`` 255, 3 scales, kernel 5; 19 blocks of 64 features, and 3 of 16 for the tiny
size) was cast to float64, loaded with ``_seeded_state`` (its keys are ours, in the same order), and fed as its test
loop feeds it: the uint8 image of ``_seeded_uint8`` as float, ``pyramid_gaussian(img, 2, multichannel=True)``
(``generate_pyramid``'s call; scikit-image 0.26 spells it ``channel_axis=-1``, and the float32 cast before it was left
out to stay in float64), ``np2tensor`` and a batch dimension. The values are the release's ``output_pyramid`` in its
0-255 range. Our model got the same input as ``uint8 / 255``; the largest difference was 1.2e-12 (0-255 units) at
full resolution and 4.5e-13 at the coarser scales. In float32, against the release's own float32 path
(``generate_pyramid`` with its float32 cast), it was 3.4e-4 of 255, the release's own float32-vs-float64 gap being
2.5e-4. Neither the release nor its weights are needed here; the released GOPRO_L1 weights were not available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import CheckpointError, TrainOutput, create_model, load_checkpoint, read_state_dict
from models.base import pad_to_multiple
from models.checkpoint import WRAPPER_KEYS
from models.deepdeblur import DeepDeblur, DeepDeblurTrainOutput, gaussian_pyramid
from tests.conftest import seeded_state


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights the golden values were computed with (``tests.conftest.seeded_state``)."""
    return seeded_state(model, seed)


def _seeded_uint8() -> torch.Tensor:
    """(3, 64, 96) int64 in [0, 255]: ``torch.randint`` from a generator seeded 0 (the release read it as HWC)."""
    return torch.randint(0, 256, (3, 64, 96), generator=torch.Generator().manual_seed(0), dtype=torch.int64)


def _seeded_input() -> torch.Tensor:
    """``_seeded_uint8`` as our models take it: (1, 3, 64, 96) float64 in [0, 1]."""
    return (_seeded_uint8().to(torch.float64) / 255).unsqueeze(0)


# The release's output_pyramid[0] (0-255) for _seeded_input under _seeded_state, and the sum and absolute sum of
# output_pyramid[1] and [2] (all positive, so both are the same).
GOLDEN = {
    "deepdeblur": {
        "top_left": [  # out[0, :, :2, :3].flatten()
            169.5146260899067,
            109.39846201190248,
            158.71397645611307,
            217.71483890536,
            146.01988573331164,
            217.31131220888574,
            119.29001482966794,
            94.99698659094676,
            98.62207188749446,
            108.62576725872933,
            114.56034087952018,
            153.86482956251461,
            127.7218590053688,
            114.5826128061114,
            155.93565806468175,
            107.84534123784607,
            166.22970600315355,
            178.1719940133163,
        ],
        "bottom_right": [  # out[0, :, -2:, -3:].flatten()
            208.68046815215445,
            163.92874091777384,
            97.39802691536576,
            130.44081387949848,
            75.29931850538311,
            122.42595629187652,
            144.8988602091572,
            100.87974856692352,
            115.7154832583984,
            68.01656335721646,
            88.6903280334378,
            134.52924364975968,
            125.09350149073725,
            153.34609494237745,
            152.76513412192696,
            143.96645415589387,
            153.17515876519073,
            132.58777297454472,
        ],
        "ramp_sum": 1386959.6205100412,
        "sum": 2668629.1658777124,
        "abs_sum": 2775967.273882164,
        "coarse_sums": [590374.2001807531, 144290.2160232847],
    },
    "deepdeblur_tiny": {
        "top_left": [
            144.8634963144906,
            105.16309995814345,
            157.60043508086883,
            129.7654790790849,
            133.50683675804362,
            133.9600295154846,
            106.63719217554913,
            140.51593287490851,
            126.2793729424995,
            137.40598913172556,
            121.98928266542893,
            111.79907636166723,
            136.06578177586024,
            135.7285749538231,
            142.2641024085643,
            124.70620806696928,
            130.26613306900188,
            112.52622545375691,
        ],
        "bottom_right": [
            113.04955892928386,
            113.08211944313962,
            147.6190655368786,
            136.09381618130396,
            164.66032384306584,
            117.97227134670416,
            162.86926077469303,
            154.90637225516517,
            122.96038762877487,
            165.09168255504207,
            134.92582222461007,
            126.35839186649164,
            81.66013119452259,
            112.70470895126343,
            123.04070310358152,
            141.70280123229756,
            122.62728012385658,
            140.4102513242873,
        ],
        "ramp_sum": 1221740.8133869378,
        "sum": 2393744.1232576817,
        "abs_sum": 2393775.799182346,
        "coarse_sums": [588870.2654307531, 145951.76113847113],
    },
}


def _release_keys(n_resblocks: int, n_scales: int = 3) -> list[str]:
    """The release's ``MSResNet`` state-dict keys, in its order."""
    keys = []
    for s in range(n_scales):
        layers = ["body.0", *(f"body.{i}.body.{j}" for i in range(1, n_resblocks + 1) for j in (0, 2))]
        layers.append(f"body.{n_resblocks + 1}")
        keys += [f"body_models.{s}.{layer}.{p}" for layer in layers for p in ("weight", "bias")]
    keys += [f"conv_end_models.{s}.uppath.0.{p}" for s in range(1, n_scales) for p in ("weight", "bias")]
    return keys


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "blocks"), [("deepdeblur", 11_721_321, 19), ("deepdeblur_tiny", 126_969, 3)]
)
def test_parameter_counts_and_release_keys(name: str, params: int, blocks: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert model.pad_multiple == 4 and model.pad_mode == "reflect"
    assert list(model.state_dict()) == _release_keys(blocks)


def test_release_shapes() -> None:
    model = create_model("deepdeblur")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["body_models.0.body.0.weight"] == (64, 6, 5, 5)  # finest scale: input + upsampled coarser output
    assert shapes["body_models.1.body.0.weight"] == (64, 6, 5, 5)
    assert shapes["body_models.2.body.0.weight"] == (64, 3, 5, 5)  # coarsest: the 1/4 input only
    assert shapes["body_models.2.body.20.weight"] == (3, 64, 5, 5)
    assert shapes["conv_end_models.1.uppath.0.weight"] == (12, 3, 5, 5)
    assert model.conv_end_models[0] is None
    per_scale = [sum(p.numel() for p in m.parameters()) for m in model.body_models]
    assert per_scale == [3_908_099, 3_908_099, 3_903_299]
    assert sum(p.numel() for p in model.conv_end_models.parameters()) == 2 * 912


def test_constructor_checks_its_arguments() -> None:
    for bad in ({"n_scales": 0}, {"n_feats": 0}, {"n_resblocks": -1}, {"kernel_size": 4}):
        with pytest.raises(ValueError, match="DeepDeblur"):
            DeepDeblur(**bad)
    assert DeepDeblur(n_scales=4, n_resblocks=1, n_feats=4).pad_multiple == 8


# --- the release's checkpoint file ---------------------------------------------------------------------------------


def test_release_file_loads_strictly(tmp_path: Path) -> None:
    """``experiment/GOPRO_L1/models/model-1000.pt``: ``{'G': MSResNet.state_dict()}`` (no ``module.`` prefix)."""
    assert "G" in WRAPPER_KEYS
    torch.manual_seed(0)
    source = create_model("deepdeblur")
    path = tmp_path / "model-1000.pt"
    torch.save({"G": source.state_dict()}, path)
    assert list(read_state_dict(path)) == list(source.state_dict())
    torch.manual_seed(1)
    model = load_checkpoint(create_model("deepdeblur"), path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_the_tiny_models_file_does_not_fit_the_full_model(tmp_path: Path) -> None:
    path = tmp_path / "model-1000.pt"
    torch.save({"G": create_model("deepdeblur_tiny").state_dict()}, path)
    expected = r"(?s)does not fit model 'deepdeblur':\n  missing keys \(198\).*unexpected keys \(6\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(create_model("deepdeblur"), path)


# --- the input pyramid ---------------------------------------------------------------------------------------------


def test_pyramid_is_scikit_images_pyramid_gaussian() -> None:
    """The release's ``generate_pyramid``: ``pyramid_gaussian(img, n_scales - 1, multichannel=True)`` (0.26 spells it
    ``channel_axis=-1``), here on a float64 0-255 image with sizes that reach the reflected border."""
    from skimage.transform import pyramid_gaussian

    img = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 255
    ours = gaussian_pyramid(img, 3)
    for n in range(2):
        ref = list(pyramid_gaussian(img[n].permute(1, 2, 0).numpy(), 2, channel_axis=-1))
        assert [r.shape[:2] for r in ref] == [(24, 20), (12, 10), (6, 5)]
        for level, expected in zip(ours, ref, strict=True):
            np.testing.assert_allclose(level[n].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-11)
    with pytest.raises(ValueError, match="halving needs even sizes"):
        gaussian_pyramid(torch.rand(1, 3, 10, 6), 3)  # 10x6 -> 5x3, which the release would cut to 3x2


# --- parity with the release ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deepdeblur_tiny", pytest.param("deepdeblur", marks=pytest.mark.slow)])
def test_forward_matches_the_release_in_float64(name: str) -> None:
    model = create_model(name).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    lq = _seeded_input()
    with torch.no_grad():
        out = model(lq) * 255
        pyramid = model.forward_train(lq, lq).pyramid
    golden = GOLDEN[name]
    assert out.shape == (1, 3, 64, 96)
    assert out[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert out[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape) / out.numel()
    assert (out * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(64, 96), (32, 48), (16, 24)]
    coarse = [(p * 255).sum().item() for p in pyramid[1:]]
    assert coarse == pytest.approx(golden["coarse_sums"], rel=1e-10, abs=1e-10)


# --- any size, training --------------------------------------------------------------------------------------------


def test_odd_size_keeps_shape_and_is_the_reflect_padded_restoration() -> None:
    torch.manual_seed(0)
    model = create_model("deepdeblur_tiny").eval()
    lq = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        padded, _ = pad_to_multiple(lq, 4, "reflect")
        assert padded.shape[-2:] == (40, 56)
        expected = model.restore(padded)[..., :37, :53]
        even = torch.rand(1, 3, 32, 48)  # a size the release runs on: nothing is padded
        torch.testing.assert_close(model(even), model.restore(even), rtol=0, atol=0)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_forward_train_and_multiscale_l1_loss() -> None:
    torch.manual_seed(0)
    model = create_model("deepdeblur_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    assert isinstance(out, DeepDeblurTrainOutput) and out.restored is out.pyramid[0]
    assert [tuple(p.shape) for p in out.pyramid] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    terms = model.loss(out, gt)
    assert set(terms) == {"l1", "total"}
    targets = gaussian_pyramid(gt, 3)
    expected = sum((p - t).abs().mean() for p, t in zip(out.pyramid, targets, strict=True))
    torch.testing.assert_close(terms["total"], expected)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.forward_train(lq, gt).restored, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        model.forward_train(torch.rand(1, 3, 30, 32), gt)
    with pytest.raises(TypeError, match="DeepDeblurTrainOutput"):
        model.loss(TrainOutput(restored=out.restored), gt)
