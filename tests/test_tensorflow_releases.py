"""The TensorFlow releases (SRN, PSS-NSC): the checkpoint reader, TF semantics, parity with TensorFlow, conversion.

The fixtures in ``tests/fixtures/tensorflow`` were written by TensorFlow 2.21.0 running the releases' generators
(``README.md`` there): three small checkpoints with TensorFlow's own float64 outputs, and the ``.index`` files of the
full-size layouts (one of them the PSS-NSC release's own). Against TensorFlow the maximum absolute difference of the
finest scale was 1.2e-14 (SRN lstm, full size), 3.1e-14 (SRN color), 1.6e-14 (SRN gray), 6.9e-8 on outputs of
magnitude 1.2e7 (PSS-NSC, random weights: relative 5.5e-15), measured by the scratch script of that README; the
small fixtures are held to 1e-12 relative here. TensorFlow is not needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.convert import main as convert_main
from models import CheckpointError, create_model, load_checkpoint
from models.pssnsc import PSSNSC
from models.srn import SRN
from models.tfcheckpoint import TFCheckpointError, crc32c, read_index, read_tf_checkpoint, unmask_crc
from models.tfops import resize_bilinear_legacy, same_padding
from tests.tfbundle import mask_crc, to_slim, write_tf_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tensorflow"

# folder -> (model, seed and NHWC shape of the input, see the fixtures' README)
SMALL = {
    "srn_c2_lstm": (lambda: SRN(kind="lstm", channels=2), 3, (3, 32, 48, 1)),
    "srn_c2_color": (lambda: SRN(kind="color", channels=2), 5, (1, 32, 48, 3)),
    "pssnsc_c2": (lambda: PSSNSC(channels=2), 4, (3, 32, 48, 1)),
}


def _fixture_input(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32).astype(np.float64)


def _to_rgb(nhwc: np.ndarray) -> torch.Tensor:
    """A fixture array as the (N, 3, H, W) RGB batch the model sees: one-channel fixtures hold R, G, B in the batch."""
    t = torch.from_numpy(nhwc)
    return t.permute(3, 0, 1, 2) if t.shape[-1] == 1 else t.permute(0, 3, 1, 2)


# --- sizes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("srn", 8_056_609),
        ("srn_gray", 6_876_449),
        ("srn_color", 6_881_251),
        ("srn_tiny", 126_533),
        ("pssnsc", 3_871_715),
        ("pssnsc_tiny", 61_279),
    ],
)
def test_parameter_counts(name: str, params: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert model.pad_multiple == 16 and model.pad_mode == "replicate"


def test_constructors_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="kind must be lstm, gray or color"):
        SRN(kind="rgb")
    with pytest.raises(ValueError, match="SRN: channels"):
        SRN(channels=0)
    with pytest.raises(ValueError, match="PSSNSC: channels"):
        PSSNSC(channels=0)


# --- TensorFlow semantics ------------------------------------------------------------------------------------------


def test_same_padding_is_tensorflows() -> None:
    assert same_padding(720, 5, 2) == (1, 2)  # even size, stride 2: the odd pixel goes after
    assert same_padding(5, 5, 2) == (2, 2)
    assert same_padding(64, 5, 1) == (2, 2)
    assert same_padding(64, 3, 2) == (0, 1)


def test_legacy_bilinear_resize_known_values() -> None:
    x = torch.arange(16.0, dtype=torch.float64).reshape(1, 1, 4, 4)
    # 4x reduction: source = 4 * destination, no half-pixel offset: plain subsampling.
    torch.testing.assert_close(resize_bilinear_legacy(x, (1, 1)), x[..., :1, :1], rtol=0, atol=0)
    torch.testing.assert_close(resize_bilinear_legacy(x, (2, 2)), x[..., ::2, ::2], rtol=0, atol=0)
    row = torch.tensor([[[[0.0, 1.0, 2.0]]]], dtype=torch.float64)
    up = resize_bilinear_legacy(row, (1, 6))  # source 0, .5, 1, 1.5, 2, 2.5 -> clamped at the last pixel
    assert up.flatten().tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert up.dtype == torch.float64
    assert resize_bilinear_legacy(x, (4, 4)) is x


# --- training ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["srn_tiny", "pssnsc_tiny"])
def test_loss_is_the_sum_over_scales_of_the_mse(name: str) -> None:
    model = create_model(name)
    gt = torch.full((1, 3, 32, 32), 0.5)
    out = model.forward_train(torch.rand(1, 3, 32, 32), gt)
    assert [tuple(o.shape[-2:]) for o in out.scales] == [(8, 8), (16, 16), (32, 32)]
    zeros = type(out)(restored=torch.zeros_like(gt), scales=[torch.zeros_like(o) for o in out.scales])
    terms = model.loss(zeros, gt)
    assert terms["total"].item() == pytest.approx(3 * 0.25) and terms["mse_fine"].item() == pytest.approx(0.25)
    model.loss(out, gt)["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="multiple of 16"):
        model.forward_train(torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24))


# --- the reader ------------------------------------------------------------------------------------------------------


def test_reader_reads_tensorflows_files() -> None:
    shards, entries = read_index(FIXTURES / "srn_c2_lstm" / "model.index")
    assert shards == 1 and len(entries) == 87  # 86 weights and biases + the step counter
    assert entries["g_net/enc1_1/weights"].shape == (5, 5, 2, 2) and entries["g_net/enc1_1/weights"].dtype == 2
    assert entries["g_net/convLSTM/LSTM_conv/weights"].shape == (3, 3, 16, 32)
    assert entries["g_net/dec2_4/weights"].shape == (4, 4, 4, 8)  # conv2d_transpose: [kh, kw, out, in]
    tensors = read_tf_checkpoint(FIXTURES / "srn_c2_lstm")  # the folder: its `checkpoint` file names the prefix
    assert tensors["Variable"].dtype == np.int32 and tensors["Variable"].shape == () and int(tensors["Variable"]) == 0
    assert tensors["g_net/enc1_1/biases"].dtype == np.float64


def test_reader_reads_the_pssnsc_releases_own_index() -> None:
    """The authors' TF 1.7 file (float32): 133 weights, their Adam slots, two Adam powers and the step counter."""
    shards, entries = read_index(FIXTURES / "index" / "pssnsc_release_default.index")
    assert shards == 1 and len(entries) == 399
    weights = {k: v for k, v in entries.items() if k.startswith("g_net/") and "/Adam" not in k}
    assert len(weights) == 132
    assert sum(int(np.prod(v.shape)) for v in weights.values()) == 3_871_715
    assert {entries[k].dtype for k in weights} == {1}  # DT_FLOAT
    assert entries["Variable"].shape == () and "beta1_power" in entries and "beta2_power" in entries


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert unmask_crc(mask_crc(0xE3069283)) == 0xE3069283


# --- parity with TensorFlow ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(SMALL))
def test_forward_matches_tensorflow_in_float64(folder: str) -> None:
    build, seed, shape = SMALL[folder]
    model = load_checkpoint(build().double().eval(), FIXTURES / folder)
    golden = np.load(FIXTURES / folder / "output.npy")
    with torch.no_grad():
        out = model(_to_rgb(_fixture_input(seed, shape)))
    expected = _to_rgb(golden)
    assert out.shape == expected.shape
    scale = expected.abs().max().item()
    assert (out - expected).abs().max().item() <= 1e-12 * scale


def test_odd_sizes_are_edge_padded_to_16_and_cropped() -> None:
    build, seed, shape = SMALL["srn_c2_color"]
    model = load_checkpoint(build().double().eval(), FIXTURES / "srn_c2_color")
    lq = _to_rgb(_fixture_input(seed, shape))[..., :29, :45]
    with torch.no_grad():
        out = model(lq)
        padded = torch.nn.functional.pad(lq, (0, 3, 0, 3), mode="replicate")
        direct = model.restore(padded)[..., :29, :45]
    assert out.shape == lq.shape
    torch.testing.assert_close(out, direct, rtol=0, atol=0)


# --- full-size layouts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "name"),
    [
        ("srn.index", "srn"),
        ("srn_gray.index", "srn_gray"),
        ("srn_color.index", "srn_color"),
        ("pssnsc_release_default.index", "pssnsc"),
    ],
)
def test_full_size_release_layouts_convert_strictly(index: str, name: str) -> None:
    """Every weight of the release's layout (names and shapes from the real .index) lands in the model strictly."""
    _, entries = read_index(FIXTURES / "index" / index)
    rng = np.random.default_rng(0)
    tensors = {k: rng.standard_normal(e.shape).astype(np.float32) for k, e in entries.items()}
    model = create_model(name)
    state = model.convert_release(tensors, source=index)
    model.load_state_dict(state, strict=True)
    kernel = tensors["g_net/enc2_1/weights" if name.startswith("srn") else "g_net/enc2_1_1/weights"]
    key = "enc2_1.weight" if name.startswith("srn") else "enc2_1_1.weight"
    assert torch.equal(model.state_dict()[key], torch.from_numpy(kernel).permute(3, 2, 0, 1))


# --- files built here in the release's layout, and bad input --------------------------------------------------------


def _release_folder(tmp_path: Path, name: str = "srn_tiny") -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    source = create_model(name)
    folder = tmp_path / "lstm"
    write_tf_checkpoint(folder / "deblur.model-523000", to_slim(source.state_dict()))
    (folder / "checkpoint").write_text('model_checkpoint_path: "deblur.model-523000"\n')
    return folder, source


def test_a_release_folder_loads_strictly_and_converts(tmp_path: Path) -> None:
    folder, source = _release_folder(tmp_path)
    loaded = load_checkpoint(create_model("srn_tiny"), folder)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    out = tmp_path / "srn_tiny.pt"
    assert convert_main(["srn_tiny", str(folder / "deblur.model-523000.index"), str(out)]) == 0
    again = load_checkpoint(create_model("srn_tiny"), out)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in source.state_dict().items())
    files = [str(folder / "deblur.model-523000.index"), str(folder / "deblur.model-523000.data-00000-of-00001")]
    assert convert_main(["srn_tiny", *files, str(tmp_path / "two.pt")]) == 0


def test_convert_refuses_a_mismatch_and_unrelated_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, _ = _release_folder(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        convert_main(["pssnsc_tiny", str(folder), str(tmp_path / "x.pt")])
    assert exit_.value.code == 2 and "lacks 'g_net/enc1_1_0/weights'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit):
        convert_main(["srn_tiny", str(tmp_path / "a.index"), str(tmp_path / "b.index"), str(tmp_path / "x.pt")])
    assert "files of one TensorFlow checkpoint" in capsys.readouterr().err


def test_extra_and_missing_variables_are_named(tmp_path: Path) -> None:
    folder, _ = _release_folder(tmp_path)
    extra = r"holds 2 variables this model does not have: g_net/convLSTM/LSTM_conv/biases"
    with pytest.raises(CheckpointError, match=extra):
        load_checkpoint(SRN(kind="gray", channels=4), folder)
    with pytest.raises(CheckpointError, match=r"has shape \(4, 2, 5, 5\) after conversion, the model's enc1_1.weight"):
        load_checkpoint(SRN(kind="lstm", channels=8), folder)
    with pytest.raises(CheckpointError, match="not a TensorFlow release"):
        load_checkpoint(create_model("mtrnn_tiny"), folder)


def test_corrupt_truncated_and_missing_files_are_named(tmp_path: Path) -> None:
    folder, _ = _release_folder(tmp_path)
    index = folder / "deblur.model-523000.index"
    data = folder / "deblur.model-523000.data-00000-of-00001"
    good_index, good_data = index.read_bytes(), data.read_bytes()
    index.write_bytes(good_index[:100] + bytes([good_index[100] ^ 1]) + good_index[101:])
    with pytest.raises(CheckpointError, match=rf"{index.name} is corrupt \(block checksum"):
        load_checkpoint(create_model("srn_tiny"), folder)
    index.write_bytes(good_index[:-10])
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        load_checkpoint(create_model("srn_tiny"), folder)
    index.write_bytes(good_index)
    data.write_bytes(good_data[:-4])
    with pytest.raises(CheckpointError, match="is truncated in its data file"):
        load_checkpoint(create_model("srn_tiny"), folder)
    data.write_bytes(good_data[:50] + bytes([good_data[50] ^ 1]) + good_data[51:])
    with pytest.raises(CheckpointError, match="fails its checksum"):
        load_checkpoint(create_model("srn_tiny"), folder)
    data.unlink()
    with pytest.raises(CheckpointError, match=rf"{data.name} does not exist"):
        load_checkpoint(create_model("srn_tiny"), folder)


def test_a_folder_with_two_checkpoints_needs_the_prefix(tmp_path: Path) -> None:
    folder, source = _release_folder(tmp_path)
    (folder / "checkpoint").unlink()
    write_tf_checkpoint(folder / "deblur.model-1000", to_slim(source.state_dict()))
    with pytest.raises(TFCheckpointError, match=r"holds 2 \.index files"):
        read_tf_checkpoint(folder)
    assert len(read_tf_checkpoint(folder / "deblur.model-1000")) == len(source.state_dict()) + 1


def test_fixture_readme_lists_every_fixture() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for folder in [*SMALL, *(p.name for p in (FIXTURES / "index").iterdir())]:
        assert f"`{folder}`" in readme, folder
