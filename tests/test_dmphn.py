"""DMPHN (models/dmphn.py): sizes, the release's folder of per-level checkpoints, parity with the release's forward.

The golden values were computed once with the release's own code (HongguangZhang/DMPHN-cvpr19-master ``models.py``,
and the forward pass of ``DMPHN_1_2_4_8_test.py`` / ``DMPHN_1_2_4_test.py`` executed line for line), in float64, with
the weights of ``_seeded_state`` loaded into the release's ``Encoder``/``Decoder`` instances (our key minus its
``encoder_lv1.`` prefix is the release's key) and the input of ``_seeded_input``. Neither the network nor the release
files are needed here. With the released GoPro weights, the same comparison on the frame ``test_samples/000001.png``
(1280x720) gave a maximum absolute difference of exactly 0 in float64 and in float32, for both released models.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from models import CheckpointError, TrainOutput, create_model, load_checkpoint
from models.base import pad_to_multiple
from models.checkpoint import read_module_folder
from models.dmphn import DMPHN, PATCH_GRIDS, merge_patches, split_patches
from tests.conftest import seeded_state

RELEASE_ENCODER_KEYS = [
    f"{layer}.{p}"
    for layer in [
        "layer1",
        "layer2.0",
        "layer2.2",
        "layer3.0",
        "layer3.2",
        "layer5",
        "layer6.0",
        "layer6.2",
        "layer7.0",
        "layer7.2",
        "layer9",
        "layer10.0",
        "layer10.2",
        "layer11.0",
        "layer11.2",
    ]
    for p in ("weight", "bias")
]
"""The keys of the release's ``encoder_lv*.pkl`` files, in their order."""
RELEASE_DECODER_KEYS = [
    f"{layer}.{p}"
    for layer in [
        "layer13.0",
        "layer13.2",
        "layer14.0",
        "layer14.2",
        "layer16",
        "layer17.0",
        "layer17.2",
        "layer18.0",
        "layer18.2",
        "layer20",
        "layer21.0",
        "layer21.2",
        "layer22.0",
        "layer22.2",
        "layer24",
    ]
    for p in ("weight", "bias")
]
"""The keys of the release's ``decoder_lv*.pkl`` files, in their order."""


def _seeded_state(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights the golden values were computed with (``tests.conftest.seeded_state``)."""
    return seeded_state(model, seed)


def _seeded_input() -> torch.Tensor:
    """(1, 3, 64, 96) float64 in [0, 1): ``torch.rand`` from a generator seeded 0."""
    return torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0), dtype=torch.float64).unsqueeze(0)


# Release output (``deblur_image.data + 0.5``, what its test script saves) for _seeded_input under _seeded_state.
GOLDEN = {
    "dmphn": {
        "top_left": [  # out[0, :, :2, :3].flatten()
            0.6535466203670569,
            0.5611105711377224,
            0.604875619480827,
            0.6537616759948407,
            0.7534079570522639,
            0.6305434444350903,
            0.5844805337425243,
            0.5334209292679284,
            0.5178241867575616,
            0.683786486458206,
            0.6992398145163874,
            0.7161111232262038,
            0.5171968768739159,
            0.2710451532642927,
            0.4912170915195208,
            0.41475953064011706,
            0.4119698908202435,
            0.259186593549961,
        ],
        "bottom_right": [  # out[0, :, -2:, -3:].flatten()
            0.49656891345351367,
            0.4988820343980556,
            0.5513432523034942,
            0.8351627480491358,
            0.8625510709586495,
            0.7282265092920556,
            0.49152946655113583,
            0.6318709143698383,
            0.517533970586673,
            0.6269386583136909,
            0.5589985379565968,
            0.6097580940578478,
            0.39235827514981136,
            0.5239423964624862,
            0.38205728108957865,
            0.5326269313139754,
            0.4829598094184373,
            0.4944031049534182,
        ],
        "ramp_sum": 4033.76850116076,
        "sum": 8837.295442665561,
        "abs_sum": 8884.768916599283,
    },
    "dmphn_1_2_4": {
        "top_left": [
            0.6120694124958229,
            0.6824082435024781,
            0.6436197068815724,
            0.8724480647668635,
            0.7283213203040952,
            0.6076567902992993,
            0.5812334934172292,
            0.436332123925534,
            0.5193741997086038,
            0.6656637334074416,
            0.6521803229418542,
            0.6757163685720888,
            0.5529522479136143,
            0.25891826658340533,
            0.3926081451998199,
            0.41273800576541314,
            0.38589268265418775,
            0.24151362667958115,
        ],
        "bottom_right": [
            0.41788105761190303,
            0.6196387638786935,
            0.41915723953721185,
            0.8456640091828218,
            1.049118401392866,
            0.6515211778637455,
            0.5835510856206972,
            0.7051647042760627,
            0.5442565734640279,
            0.6882229548307504,
            0.5381703328053452,
            0.5192123406636896,
            0.25056660642322737,
            0.37613240999195025,
            0.3336847871129252,
            0.40796337089540013,
            0.33157448147907304,
            0.4368361344341769,
        ],
        "ramp_sum": 4339.550560338899,
        "sum": 9511.873700957069,
        "abs_sum": 9511.996919815532,
    },
}


def _save_release_folder(model: DMPHN, folder: Path) -> None:
    """The release's layout: ``<folder>/<module>.pkl``, each a bare state dict as ``torch.save(net.state_dict())``."""
    folder.mkdir(parents=True)
    for name in model.release_modules:
        torch.save(getattr(model, name).state_dict(), folder / f"{name}.pkl")


# --- sizes and layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "levels", "params", "pad_multiple"),
    [("dmphn", 4, 7_232_524, 16), ("dmphn_1_2_4", 3, 5_424_393, 8), ("dmphn_tiny", 4, 454_924, 16)],
)
def test_parameter_counts_and_pad_multiple(name: str, levels: int, params: int, pad_multiple: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert model.levels == levels and model.pad_multiple == pad_multiple
    assert len(model.state_dict()) == 60 * levels


def test_submodules_carry_the_release_file_and_key_names() -> None:
    model = create_model("dmphn")
    assert model.release_modules == tuple(f"{p}_lv{k}" for p in ("encoder", "decoder") for k in (1, 2, 3, 4))
    expected_3 = ("encoder_lv1", "encoder_lv2", "encoder_lv3", "decoder_lv1", "decoder_lv2", "decoder_lv3")
    assert create_model("dmphn_1_2_4").release_modules == expected_3
    for k in (1, 2, 3, 4):
        assert list(getattr(model, f"encoder_lv{k}").state_dict()) == RELEASE_ENCODER_KEYS
        assert list(getattr(model, f"decoder_lv{k}").state_dict()) == RELEASE_DECODER_KEYS
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["encoder_lv1.layer1.weight"] == (32, 3, 3, 3)
    assert shapes["encoder_lv4.layer9.weight"] == (128, 64, 3, 3)
    assert shapes["decoder_lv2.layer16.weight"] == (128, 64, 4, 4)  # ConvTranspose2d: (in, out, k, k)
    assert shapes["decoder_lv3.layer24.weight"] == (3, 32, 3, 3)
    assert sum(p.numel() for p in model.encoder_lv1.parameters()) == 868_288
    assert sum(p.numel() for p in model.decoder_lv1.parameters()) == 939_843


def test_constructor_checks_its_arguments() -> None:
    for bad in ({"levels": 0}, {"levels": 5}, {"channels": 0}):
        with pytest.raises(ValueError, match="DMPHN"):
            DMPHN(**bad)


def test_patch_grids_cut_as_the_release() -> None:
    """Level 4's 4 x 2 grid is the release's nesting (halve H, halve W, halve H again), patch for patch."""
    x = torch.arange(2 * 3 * 32 * 16, dtype=torch.float64).reshape(2, 3, 32, 16)
    h, w = 32, 16
    lv2 = [x[:, :, : h // 2], x[:, :, h // 2 :]]
    lv3 = [half[..., cols] for half in lv2 for cols in (slice(0, w // 2), slice(w // 2, w))]
    lv4 = [part for quarter in lv3 for part in (quarter[:, :, : h // 4], quarter[:, :, h // 4 : h // 2])]
    # The release's order (images_lv3_1..4 = top-left, top-right, bottom-left, bottom-right; lv4 pairs within them)
    # is a nesting, ours a row-major grid: compare each release patch with the one at the same place.
    patches = split_patches(x, PATCH_GRIDS[3]).reshape(4, 2, 2, 3, h // 4, w // 2)
    places = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 0), (2, 1), (3, 1)]
    for release_patch, (r, c) in zip(lv4, places, strict=True):
        torch.testing.assert_close(patches[r, c], release_patch, rtol=0, atol=0)
    for grid in PATCH_GRIDS:
        torch.testing.assert_close(merge_patches(split_patches(x, grid), grid, 2), x, rtol=0, atol=0)


# --- the release's checkpoint folder -------------------------------------------------------------------------------


def test_release_folder_loads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("dmphn")
    folder = tmp_path / "DMPHN_1_2_4_8"
    _save_release_folder(source, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{m}.pkl" for m in source.release_modules)
    torch.manual_seed(1)
    model = load_checkpoint(create_model("dmphn"), folder)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    state = read_module_folder(folder, ("encoder_lv2",))
    assert list(state) == [f"encoder_lv2.{k}" for k in RELEASE_ENCODER_KEYS]


def test_a_missing_module_file_is_named_with_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "DMPHN_1_2_4_8"
    _save_release_folder(create_model("dmphn_tiny"), folder)
    (folder / "decoder_lv3.pkl").unlink()
    with pytest.raises(CheckpointError, match=rf"lacks 1 of its 8 module files: {folder / 'decoder_lv3.pkl'}.*again"):
        load_checkpoint(create_model("dmphn_tiny"), folder)


def test_a_corrupt_module_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "DMPHN_1_2_4_8"
    _save_release_folder(create_model("dmphn_tiny"), folder)
    path = folder / "encoder_lv2.pkl"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is unreadable or truncated"):
        load_checkpoint(create_model("dmphn_tiny"), folder)


@dataclass
class _Payload:
    """Not a tensor: the safe loader refuses to unpickle it."""

    value: int = 3


def test_an_unsafe_or_wrapped_module_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "DMPHN_1_2_4_8"
    model = create_model("dmphn_tiny")
    _save_release_folder(model, folder)
    path = folder / "decoder_lv1.pkl"
    torch.save({"weights": _Payload()}, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} was refused by the safe loader") as info:
        load_checkpoint(create_model("dmphn_tiny"), folder)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    torch.save({"model": model.decoder_lv1.state_dict()}, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path}: not a bare state dict"):
        load_checkpoint(create_model("dmphn_tiny"), folder)


def test_another_variants_folder_is_refused(tmp_path: Path) -> None:
    """The 1-2-4-8 folder holds everything the 1-2-4 model reads, plus level 4: that is the wrong checkpoint."""
    folder = tmp_path / "DMPHN_1_2_4_8"
    _save_release_folder(create_model("dmphn_tiny"), folder)
    with pytest.raises(CheckpointError, match=r"module files this model does not have: .*decoder_lv4\.pkl"):
        load_checkpoint(create_model("dmphn_1_2_4", channels=8), folder)
    small = tmp_path / "DMPHN_1_2_4"
    _save_release_folder(create_model("dmphn_1_2_4", channels=8), small)
    with pytest.raises(CheckpointError, match=r"lacks 2 of its 8 module files: .*encoder_lv4\.pkl"):
        load_checkpoint(create_model("dmphn_tiny"), small)


def test_a_width_mismatch_lists_the_shapes(tmp_path: Path) -> None:
    folder = tmp_path / "DMPHN_1_2_4_8"
    _save_release_folder(create_model("dmphn_tiny"), folder)
    with pytest.raises(CheckpointError, match=r"does not fit model 'dmphn':\n  shape differences \(236\)"):
        load_checkpoint(create_model("dmphn"), folder)


def test_a_folder_for_a_single_file_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a folder, but model 'mimo_unet_tiny' is released as a single file"):
        load_checkpoint(create_model("mimo_unet_tiny"), tmp_path)


# --- parity with the release ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dmphn", "dmphn_1_2_4"])
def test_forward_matches_the_release_in_float64(name: str) -> None:
    model = create_model(name).double().eval()
    model.load_state_dict(_seeded_state(model), strict=True)
    with torch.no_grad():
        out = model(_seeded_input())
    golden = GOLDEN[name]
    assert out.shape == (1, 3, 64, 96)
    assert out[0, :, :2, :3].flatten().tolist() == pytest.approx(golden["top_left"], rel=1e-10, abs=1e-10)
    assert out[0, :, -2:, -3:].flatten().tolist() == pytest.approx(golden["bottom_right"], rel=1e-10, abs=1e-10)
    ramp = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape) / out.numel()
    assert (out * ramp).sum().item() == pytest.approx(golden["ramp_sum"], rel=1e-10, abs=1e-10)
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-10, abs=1e-10)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-10, abs=1e-10)


# --- any size, training --------------------------------------------------------------------------------------------


def test_odd_size_keeps_shape_and_is_the_reflect_padded_restoration() -> None:
    torch.manual_seed(0)
    model = create_model("dmphn_tiny").eval()
    lq = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model(lq)
        padded, _ = pad_to_multiple(lq, 16, "reflect")
        assert padded.shape[-2:] == (48, 64)
        expected = model.restore(padded)[..., :37, :53]
        # A size the release runs on needs no padding: forward is restore itself.
        even = torch.rand(1, 3, 32, 48)
        torch.testing.assert_close(model(even), model.restore(even), rtol=0, atol=0)
    assert out.shape == lq.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_forward_train_and_mse_loss() -> None:
    torch.manual_seed(0)
    model = create_model("dmphn_tiny")
    lq, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model.forward_train(lq, gt)
    assert type(out) is TrainOutput and out.restored.shape == lq.shape
    terms = model.loss(out, gt)
    assert set(terms) == {"mse", "total"}
    torch.testing.assert_close(terms["total"], ((out.restored - gt) ** 2).mean())
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(lq), model.forward_train(lq, gt).restored, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        model.forward_train(torch.rand(1, 3, 40, 32), gt)
