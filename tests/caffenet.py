"""Write ``.caffemodel`` files without Caffe, for tests: a release's layers from a model's random weights.

A ``NetParameter`` with one ``LayerParameter`` (name, blobs) per layer, float32 blobs with ``BlobShape``, the field
numbers of ``models/caffemodel.py``; the committed fixture of ``tests/fixtures/caffe`` was written by the protobuf
library itself, and the reader reads both.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from tests.tfbundle import _field, _varint


def _blob(array: np.ndarray) -> bytes:
    dims = b"".join(_varint(int(d)) for d in array.shape)
    values = np.asarray(array, dtype="<f4").ravel()
    return _field(7, _field(1, dims)) + _field(5, struct.pack(f"<{values.size}f", *values))


def write_caffemodel(path: Path, layers: Mapping[str, Sequence[np.ndarray]]) -> None:
    """``layers``: layer name -> its blobs (in order), written as a ``NetParameter`` (``layer = 100``)."""
    net = _field(1, b"LRNN_v1.prototxt")
    for name, blobs in layers.items():
        layer = _field(1, name.encode()) + b"".join(_field(7, _blob(np.asarray(b))) for b in blobs)
        net += _field(100, layer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(net)


def svrnn_layers(model: torch.nn.Module) -> dict[str, list[np.ndarray]]:
    """``model``'s weights as the release's layers: each convolution's (weight, bias), and the 16 GateRecurrent
    layers' three unused blobs (W_x, W_h, bias: (1, 1, r, r), (1, 1, r, r), (1, 1, 1, r))."""
    state = model.state_dict()
    layers: dict[str, list[np.ndarray]] = {}
    for key, value in state.items():
        layers.setdefault(key.rpartition(".")[0], []).append(value.detach().cpu().numpy())
    r = model.rnn_channels
    for k in range(1, 5):
        for j in range(1, 5):
            layers[f"rnn{k}_{j}"] = [np.zeros((1, 1, r, r)), np.zeros((1, 1, r, r)), np.zeros((1, 1, 1, r))]
    return layers
