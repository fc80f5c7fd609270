"""DeblurGAN-v2 (models/deblurganv2.py): sizes, the release's checkpoint layout, parity with the release's generators.

The golden values were computed once with the release's own code, in float64 on the CPU, by a driver outside this
repository (/tmp/deblurganv2_scratch): ``FPNInception`` and ``FPNMobileNet`` of VITA-Group/DeblurGANv2@c16bd9f
``models/fpn_inception.py``, ``models/fpn_mobilenet.py`` and ``models/mobilenet_v2.py``, with the Inception-ResNet-v2
backbone of Cadene/pretrained-models.pytorch@8aae3d8 ``pretrainedmodels/models/inceptionresnetv2.py``. Shims, no
re-typed code: ``pretrainedmodels.inceptionresnetv2`` called with ``pretrained=None`` (the release asks for
'imagenet', a download; the architecture is the same), ``FPNMobileNet(..., pretrained=False)`` (no
``mobilenetv2.pth.tar``), an empty ``torchsummary``. Built with ``get_norm_layer('instance')`` of
``models/networks.py`` (``InstanceNorm2d(affine=False, track_running_stats=True)``, config ``norm_layer: instance``),
converted to float64, loaded with the weights of ``_seeded_state`` (the release's keys are ours), fed ``2 x - 1`` of
``_seeded_input`` (``predict.py``'s ``albu.Normalize(0.5, 0.5)``) under ``torch.no_grad()`` and mapped back with
``(y + 1) / 2`` (``predict.py _postprocess`` before its x255):

* ``eval``: ``net.eval()``: BatchNorm and InstanceNorm normalise with the running statistics.
* ``train``: ``net.train(True)``, as ``predict.py`` runs it: batch / instance statistics; the sums of all
  ``running_mean`` / ``running_var`` buffers after that one forward pass are pinned too.

Our modules gave a maximum absolute difference of exactly 0 against the release's, in both modes and both networks
(outputs and every buffer after the train-mode pass). Neither the networks nor the release files are needed here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models import TrainOutput, create_model, load_checkpoint
from models.base import pad_to_multiple
from models.deblurganv2 import DeblurGANv2, imagenet_normalize


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights for ``model``'s state dict, independent of torch's init code: one value per
    tensor (a module registered under two names, ``fpn.inception.conv2d_1a`` / ``fpn.enc0``, gets one, filed under its
    first name), drawn from one generator in sorted-name order: weights of dim > 1 N(0, 1) / sqrt(fan), 1-d weights
    1 + 0.1 N(0, 1), biases 0.1 N(0, 1), running means 0.1 N(0, 1), running variances 0.5 + U(0, 1),
    ``num_batches_tracked`` 0. The release driver uses this same function."""
    sd = model.state_dict(keep_vars=True)
    canon: dict[int, str] = {}
    for k, v in sd.items():
        canon.setdefault(id(v), k)
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, torch.Tensor] = {}
    for key in sorted(set(canon.values())):
        v = sd[key]
        shape = tuple(v.shape)
        if key.endswith("num_batches_tracked"):
            values[key] = torch.zeros_like(v)
        elif key.endswith("running_var"):
            values[key] = 0.5 + torch.rand(shape, generator=gen, dtype=torch.float64)
        elif key.endswith("running_mean"):
            values[key] = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif len(shape) > 1:
            values[key] = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(".weight"):
            values[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            values[key] = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
    return {k: values[canon[id(v)]] for k, v in sd.items()}


def _seeded_input(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w) float64 in [0, 1): ``torch.rand`` from a generator seeded 0."""
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64).unsqueeze(0)


PARITY_SIZES = {"deblurganv2": (128, 160), "deblurganv2_mobilenet": (64, 96)}
"""The inputs of the golden runs (FPN-Inception needs sides >= 128)."""

# Release output ((y + 1) / 2) for _seeded_input under _seeded_state, and its buffers after the train-mode pass.
GOLDEN = {
    "deblurganv2_mobilenet/eval": {
        "top_left": [
            1.0,
            0.7439567181561656,
            0.492252957562297,
            0.2109865841252917,
            0.1557487842524185,
            0.6139406190925984,
            0.5029234496768176,
            1.0,
            0.9026051152688036,
            0.22730461366353089,
            1.0,
            0.7904004373883653,
            0.5467852160179425,
            0.09998282859153412,
            0.5871753098304917,
            0.5808258888334524,
            0.33827002261004263,
            0.4656051784179359,
        ],
        "bottom_right": [
            0.3425065321968199,
            0.8619160159619937,
            0.5342285634245939,
            0.5990614699856808,
            1.0,
            0.47897878480490963,
            0.3181594879109355,
            0.5838247997637198,
            0.7600433778322159,
            0.10915300358124702,
            1.0,
            0.28683787950030815,
            0.616321832489682,
            0.4388882945848781,
            0.1967067832322752,
            0.11375345960214256,
            1.0,
            0.4109126166319992,
        ],
        "ramp_sum": 4927.631463919757,
        "sum": 10184.143823424969,
        "abs_sum": 10184.143823424969,
    },
    "deblurganv2_mobilenet/train": {
        "top_left": [
            0.9542122171843134,
            0.7120984831373349,
            0.6725704763705339,
            0.2189903162949159,
            0.3527792271274234,
            0.9184135606503708,
            0.5170735368517437,
            0.8203875286241031,
            0.6094552690425625,
            0.20586508309042495,
            0.9134508208020458,
            0.611537105549851,
            0.4883308066242395,
            0.0,
            0.49375034149803365,
            0.4922288967497398,
            0.1173357832381774,
            0.226285364920299,
        ],
        "bottom_right": [
            0.7010030154372537,
            1.0,
            0.8173110646300599,
            0.7624327162440838,
            1.0,
            0.6374964251847652,
            0.561127050958345,
            0.8701149244965308,
            0.8452910146530291,
            0.14295379312659529,
            1.0,
            0.14474141240207383,
            0.2676774798247301,
            0.5506234237773264,
            0.3609691824255883,
            0.0,
            1.0,
            0.3301647595411845,
        ],
        "ramp_sum": 4289.935821970381,
        "sum": 9326.459050533687,
        "abs_sum": 9326.459050533687,
        "running_mean_sum": 16.748340110506103,
        "running_var_sum": 17700.918637261908,
    },
    "deblurganv2/eval": {
        "top_left": [
            1.0,
            0.8165417189706603,
            0.6029785104419655,
            0.33906184686788204,
            0.8349303289882785,
            0.8484976202904287,
            1.0,
            0.21342698967311746,
            0.451039346587807,
            0.7552502827815348,
            0.015118023932192082,
            0.6815997836972484,
            0.3695321451153814,
            0.0,
            0.43879927869307317,
            0.04685321245172058,
            0.18668826385015114,
            0.25194998774508953,
        ],
        "bottom_right": [
            0.6226305257838147,
            0.6303555725448013,
            0.82140523177341,
            0.7145164205013019,
            0.50376085230429,
            0.6967285169852904,
            0.8328743099525446,
            0.020581352507244577,
            0.8708191955920354,
            0.5907525599829043,
            0.6742371973412348,
            0.20012449802749854,
            0.9367723391464838,
            0.7757089929407763,
            0.7235727993662648,
            0.45580445067456526,
            0.13128965403427795,
            0.44506954589862924,
        ],
        "ramp_sum": 16088.067175735834,
        "sum": 31546.205343218433,
        "abs_sum": 31546.205343218433,
    },
    "deblurganv2/train": {
        "top_left": [
            1.0,
            0.9579172381305807,
            0.7328218942145568,
            0.47635940747242417,
            1.0,
            1.0,
            0.991191724679132,
            0.38123499492055646,
            0.38219934709994013,
            0.787249427730032,
            0.0,
            0.3800983280850444,
            0.3526226133392792,
            0.0,
            0.34417092780241976,
            0.024630130005952988,
            0.2511751031456968,
            0.19607535313929342,
        ],
        "bottom_right": [
            0.9061555036372941,
            0.763069388439533,
            0.7102757060525192,
            0.7956070662699346,
            0.5145638484856214,
            0.732585484932508,
            0.8090479010546221,
            0.0,
            0.8562198320418902,
            0.7417982880106151,
            0.791756095435449,
            0.13799282580286049,
            0.683347882987078,
            0.584181757664423,
            0.8450803125511561,
            0.4509625140068396,
            0.17372313113579507,
            0.6621245889265326,
        ],
        "ramp_sum": 17765.821158930063,
        "sum": 35126.43017054898,
        "abs_sum": 35126.43017054898,
        "running_mean_sum": -5.516635652015015,
        "running_var_sum": 29878.59482526837,
    },
}


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "entries"),
    [("deblurganv2", 60_929_291, 2384), ("deblurganv2_mobilenet", 3_312_707, 622), ("deblurganv2_tiny", 304_619, 622)],
)
def test_parameter_counts(name: str, params: int, entries: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert len(model.state_dict()) == entries
    assert model.pad_multiple == 32 and model.pad_mode == "zero"


def test_inception_registers_the_whole_backbone_twice_as_the_release() -> None:
    model = create_model("deblurganv2")
    inc = model.fpn.inception
    unused = sum(p.numel() for m in (inc.repeat_2, inc.block8, inc.conv2d_7b, inc.last_linear) for p in m.parameters())
    assert sum(p.numel() for p in inc.parameters()) == 55_843_464  # pretrainedmodels' InceptionResNetV2(1000)
    assert model.num_parameters - unused == 35_840_099
    sd = model.state_dict()
    keys = list(sd)
    assert keys[0] == "fpn.inception.conv2d_1a.conv.weight"
    assert keys[-2:] == ["final.weight", "final.bias"]
    assert sd["fpn.enc0.conv.weight"].data_ptr() == sd["fpn.inception.conv2d_1a.conv.weight"].data_ptr()
    assert sd["fpn.enc4.1.branch2.2.conv.weight"].shape == (320, 288, 3, 3)  # mixed_7a
    assert tuple(sd["fpn.inception.last_linear.weight"].shape) == (1000, 1536)
    assert tuple(sd["fpn.lateral4.weight"].shape) == (256, 2080, 1, 1)
    assert tuple(sd["smooth.0.weight"].shape) == (128, 512, 3, 3)
    assert tuple(sd["smooth.1.running_mean"].shape) == (128,)  # InstanceNorm2d(track_running_stats=True)


def test_mobilenet_layout() -> None:
    sd = create_model("deblurganv2_mobilenet").state_dict()
    assert "fpn.features.18.0.weight" in sd and "fpn.enc4.4.conv.6.weight" in sd  # enc4 = features[11:16]
    assert sd["fpn.enc0.1.conv.0.weight"].data_ptr() == sd["fpn.features.1.conv.0.weight"].data_ptr()
    assert not any("classifier" in k for k in sd)
    assert tuple(sd["fpn.lateral4.weight"].shape) == (128, 160, 1, 1)


def test_constructor_checks_its_arguments() -> None:
    for bad in (
        {"backbone": "resnet"},
        {"content_loss": "ssim"},
        {"num_filters": 3},
        {"backbone": "inception", "width_mult": 0.5},
        {"backbone": "mobilenet", "width_mult": 0.0},
    ):
        with pytest.raises(ValueError, match="DeblurGANv2"):
            DeblurGANv2(**bad)


# --- the release's checkpoint file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deblurganv2_mobilenet", pytest.param("deblurganv2", marks=pytest.mark.slow)])
def test_release_file_loads_strictly(tmp_path: Path, name: str) -> None:
    """train.py saves ``{'model': netG.state_dict()}`` of the ``nn.DataParallel`` generator: keys ``module.<ours>``,
    every shared module under both of its names."""
    torch.manual_seed(0)
    source = create_model(name)
    state = _seeded_state(source)
    path = tmp_path / "release.h5"
    torch.save({"model": {f"module.{k}": v.float() for k, v in state.items()}}, path)
    model = load_checkpoint(create_model(name), path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key].to(value.dtype), rtol=0, atol=0)


# --- parity with the release ---------------------------------------------------------------------------------------


def _check(out: torch.Tensor, golden: dict) -> None:
    assert out[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert out[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape) / out.numel()
    assert (out * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("name", ["deblurganv2_mobilenet", pytest.param("deblurganv2", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_matches_the_release_in_float64(name: str, mode: str) -> None:
    model = create_model(name).double()
    model.load_state_dict(_seeded_state(model), strict=True)
    model.train(mode == "train")
    x = _seeded_input(*PARITY_SIZES[name])
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape
    golden = GOLDEN[f"{name}/{mode}"]
    _check(out, golden)
    if mode == "train":
        buffers = dict(model.named_buffers())
        means = sum(v.sum().item() for k, v in buffers.items() if k.endswith("running_mean"))
        variances = sum(v.sum().item() for k, v in buffers.items() if k.endswith("running_var"))
        assert means == pytest.approx(golden["running_mean_sum"], rel=1e-10, abs=1e-10)
        assert variances == pytest.approx(golden["running_var_sum"], rel=1e-10, abs=1e-10)


# --- any size, training --------------------------------------------------------------------------------------------


def test_odd_size_keeps_shape_and_is_the_zero_padded_restoration() -> None:
    torch.manual_seed(0)
    model = create_model("deblurganv2_tiny").eval()
    lq = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        # predict.py zero-pads the [-1, 1] image: mid-grey 0.5 in [0, 1].
        padded = torch.nn.functional.pad(lq, (0, 11, 0, 27), value=0.5)
        expected = model.restore(padded)[..., :37, :53]
        reflect = model(lq, pad_mode="reflect")
        torch.testing.assert_close(reflect, model.restore(pad_to_multiple(lq, 32, "reflect")[0])[..., :37, :53])
    assert out.shape == lq.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1  # the release's clamp
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.slow
def test_inception_runs_small_inputs_padded_to_128() -> None:
    torch.manual_seed(0)
    model = create_model("deblurganv2").eval()
    lq = torch.rand(1, 3, 40, 64)
    with torch.no_grad():
        out = model(lq)
        expected = model.restore(torch.nn.functional.pad(lq, (0, 64, 0, 88), value=0.5))[..., :40, :64]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiples of 32 and >= 128"):
        model.fpn(torch.rand(1, 3, 96, 128))


def test_forward_train_and_l1_content_loss() -> None:
    torch.manual_seed(0)
    model = create_model("deblurganv2_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    assert type(out) is TrainOutput and out.restored.shape == lq.shape
    terms = model.loss(out, gt)
    assert set(terms) == {"l1", "total"}
    torch.testing.assert_close(terms["total"], 2 * (out.restored - gt).abs().mean())
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in model.fpn.features[16:].parameters())  # registered, never run
    with pytest.raises(ValueError, match="not a multiple of 32"):
        model.forward_train(torch.rand(1, 3, 48, 32), gt)


def test_perceptual_content_loss_with_a_stand_in_vgg() -> None:
    """``0.006 * MSE(VGG(n(fake)), VGG(n(real))) + 0.5 * MSE(n(fake), n(real))``; VGG replaced by a fixed conv."""
    torch.manual_seed(0)
    model = create_model("deblurganv2_tiny", content_loss="perceptual")
    vgg = torch.nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)
    model._vgg.append(vgg)
    # Batch 1 in train mode: BatchNorm needs more than one value per channel at stride 32, so sides >= 64.
    lq, gt = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    out = model.forward_train(lq, gt)
    terms = model.loss(out, gt)
    fake, real = imagenet_normalize(out.restored), imagenet_normalize(gt)
    torch.testing.assert_close(terms["perceptual"], ((vgg(fake) - vgg(real)) ** 2).mean())
    torch.testing.assert_close(terms["pixel"], ((fake - real) ** 2).mean())
    torch.testing.assert_close(terms["total"], 0.006 * terms["perceptual"] + 0.5 * terms["pixel"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(fake, (out.restored - mean) / std)
