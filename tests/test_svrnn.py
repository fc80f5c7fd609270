"""Zhang et al. 2018 (models/svrnn.py): sizes, the Caffe reader, the release's layers, parity, bad input.

Caffe cannot be built here: the golden output (``tests/fixtures/caffe``) is a NumPy transliteration of the release's
C++ CPU forward on a ``.caffemodel`` serialized by protobuf from the release's message definitions (README there).
Against it the maximum absolute difference was 7.2e-16 (float64, outputs up to 0.66); held to 1e-12 here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.convert import main as convert_main
from models import CheckpointError, create_model, load_checkpoint
from models.caffemodel import read_caffemodel
from models.svrnn import SVRNN, caffe_resize_x2, gate_recurrent
from tests.caffenet import svrnn_layers, write_caffemodel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caffe"


@pytest.mark.parametrize(("name", "params"), [("svrnn", 9_227_027), ("svrnn_tiny", 145_661)])
def test_parameter_counts(name: str, params: int) -> None:
    model = create_model(name)
    assert model.num_parameters == params
    assert model.pad_multiple == 8 and model.pad_mode == "reflect"
    assert len(model.state_dict()) == 44  # 22 convolutions, weight and bias


def test_gate_recurrence_known_values() -> None:
    x = torch.ones(1, 1, 1, 3, dtype=torch.float64)
    g = torch.full_like(x, 0.5)
    # h_t = x_t + g_t (h_{t-1} - x_t), h_{-1} = 0: 0.5, 0.75, 0.875 left to right.
    assert gate_recurrent(x, g, horizontal=True, reverse=False).flatten().tolist() == [0.5, 0.75, 0.875]
    assert gate_recurrent(x, g, horizontal=True, reverse=True).flatten().tolist() == [0.875, 0.75, 0.5]
    column = x.transpose(-1, -2)
    out = gate_recurrent(column, g.transpose(-1, -2), horizontal=False, reverse=False)
    assert out.flatten().tolist() == [0.5, 0.75, 0.875]


def test_caffe_resize_drops_neighbours_beyond_the_border() -> None:
    x = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    out = caffe_resize_x2(x)
    assert out.shape == (1, 1, 2, 4)
    assert out[0, 0, 0].tolist() == [1.0, 1.5, 2.0, 1.0]  # the last column: 0.5 x 2, its right neighbour missing
    assert out[0, 0, 1].tolist() == [0.5, 0.75, 1.0, 0.5]  # the last row: the row below is missing


def test_reader_reads_the_protobuf_written_fixture() -> None:
    layers = read_caffemodel(FIXTURES / "svrnn_c1.caffemodel")
    assert len(layers) == 38  # 22 convolutions + 16 GateRecurrent layers; 35 layers without blobs left out
    assert [b.shape for b in layers["conve1_1"]] == [(1, 3, 11, 11), (1,)]
    assert [b.shape for b in layers["rnn1_1"]] == [(1, 1, 2, 2), (1, 1, 2, 2), (1, 1, 1, 2)]
    assert layers["convd1_2"][0].dtype == np.float32


def test_forward_matches_the_releases_forward_in_float64() -> None:
    model = load_checkpoint(SVRNN(channels=1).double().eval(), FIXTURES / "svrnn_c1.caffemodel")
    image = torch.from_numpy(np.random.default_rng(7).random((1, 3, 32, 48)))
    golden = torch.from_numpy(np.load(FIXTURES / "svrnn_c1_output.npy"))
    with torch.no_grad():
        out = model(image)
    assert out.shape == golden.shape
    assert (out - golden).abs().max().item() <= 1e-12 * golden.abs().max().item()
    # The network runs on the transposed image (MatCaffe): the plain orientation gives something else.
    with torch.no_grad():
        plain = model._network(image)
    assert (plain - golden).abs().max().item() > 1e-3


def test_full_size_release_layers_load_strictly_and_convert(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("svrnn")
    path = tmp_path / "LRNN_iter_200000.caffemodel"
    write_caffemodel(path, svrnn_layers(source))
    loaded = load_checkpoint(create_model("svrnn"), path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    out = tmp_path / "svrnn.pt"
    assert convert_main(["svrnn", str(path), str(out)]) == 0
    assert all(
        torch.equal(load_checkpoint(create_model("svrnn"), out).state_dict()[k], v)
        for k, v in source.state_dict().items()
    )


def test_bad_caffe_models_are_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layers = svrnn_layers(create_model("svrnn_tiny"))
    path = tmp_path / "LRNN_iter_200000.caffemodel"
    write_caffemodel(path, layers)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=rf"{path.name} is corrupt or truncated"):
        load_checkpoint(create_model("svrnn_tiny"), path)
    write_caffemodel(path, {k: v for k, v in layers.items() if k != "convg4_3"})
    with pytest.raises(CheckpointError, match=r"layers missing \['convg4_3'\]"):
        load_checkpoint(create_model("svrnn_tiny"), path)
    write_caffemodel(path, {**layers, "rnn2_3": layers["rnn2_3"][:2]})
    with pytest.raises(CheckpointError, match="GateRecurrent layer 'rnn2_3' has blobs"):
        load_checkpoint(create_model("svrnn_tiny"), path)
    with pytest.raises(CheckpointError, match=r"layer 'conve1_1' has blobs \[\(2, 3, 11, 11\)"):
        write_caffemodel(path, layers)
        load_checkpoint(create_model("svrnn_tiny", channels=4), path)
    prototxt = tmp_path / "test.caffemodel"
    prototxt.write_bytes(b'name: "LRNN_v1.prototxt"\ninput: "data"\n')
    with pytest.raises(CheckpointError, match=r"test\.caffemodel"):
        load_checkpoint(create_model("svrnn_tiny"), prototxt)
    with pytest.raises(CheckpointError, match="not a Caffe release"):
        load_checkpoint(create_model("mtrnn_tiny"), FIXTURES / "svrnn_c1.caffemodel")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(create_model("svrnn_tiny"), tmp_path / "missing.caffemodel")


def test_loss_is_the_releases_halved_summed_squared_error() -> None:
    model = create_model("svrnn_tiny")
    gt = torch.zeros(2, 3, 16, 16)
    out = model.forward_train(torch.rand(2, 3, 16, 16), gt)
    terms = model.loss(type(out)(restored=torch.ones(2, 3, 16, 16)), gt)
    assert terms["total"].item() == pytest.approx(3 * 16 * 16 / 2)  # sum over one image's values, / 2, / batch
    assert terms["mse"].item() == pytest.approx(1.0)
    model.loss(out, gt)["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
