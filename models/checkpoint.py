"""Load weights from any release format into a registered model, safely.

Formats (``torch.load(..., weights_only=True)`` for all: a checkpoint can never run code):
- ``{"model": state_dict, ...}``: MIMO-UNet, MSFS-Net (``model.pkl``) and this harness's own checkpoints;
- ``{"params": state_dict}``: BasicSR-style releases (NAFNet, HINet);
- ``{"state_dict": state_dict, ...}``: MPRNet (keys may carry DataParallel's ``module.`` prefix, stripped here);
- a bare state dict;
- a folder of bare state dicts, one ``<module>.pkl`` per submodule named in the model's ``release_modules`` (DMPHN's
  ``encoder_lv1.pkl`` ... ``decoder_lv4.pkl``), read by ``read_module_folder`` into keys ``<module>.<key>``;
- a TensorFlow checkpoint (a prefix, its ``.index``, or a folder holding one: SRN, PSS-NSC), read without TensorFlow
  by ``models.tfcheckpoint`` and mapped by the model's own ``convert_release(tensors, source)``;
- a Caffe ``.caffemodel`` (Zhang et al. 2018), read without Caffe by ``models.caffemodel``, mapped the same way.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from models.caffemodel import CaffeModelError, read_caffemodel
from models.tfcheckpoint import TFCheckpointError, is_tf_checkpoint, read_tf_checkpoint

WRAPPER_KEYS = ("model", "params", "state_dict", "params_ema", "G")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the differences."""


def _safe_load(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; a refused or unreadable file raises ``CheckpointError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} was refused by the safe loader (weights_only=True): it holds objects other than "
            f"tensors and plain containers, which could run code when unpickled. Re-save its state_dict only. ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable or truncated ({err}); download or train it again"
        ) from err


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read the state dict stored in ``path`` in any supported release format (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or run the train stage first")
    obj = _safe_load(path)
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"checkpoint {path}: no state dict found (expected a bare state dict or one under "
            f"{', '.join(repr(k) for k in WRAPPER_KEYS)})"
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_module_folder(path: Path, modules: Sequence[str]) -> dict[str, Tensor]:
    """Read the folder ``path`` of one bare state dict per submodule, ``<path>/<module>.pkl``, into one state dict.

    Keys become ``<module>.<key>``, the model's own when ``modules`` are its submodules' names. Each file is read
    safely (``weights_only=True``, the errors of ``read_state_dict``) and must be a bare state dict; a missing file is
    named with its full path. Other files in the folder are not read (``load_checkpoint`` refuses them).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist; check the path or download the release again")
    expected = [path / f"{module}.pkl" for module in modules]
    missing = [str(file) for file in expected if not file.is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint folder {path} lacks {len(missing)} of its {len(expected)} module files: {', '.join(missing)}; "
            f"the folder must hold {', '.join(file.name for file in expected)}: download the release folder again"
        )
    state: dict[str, Tensor] = {}
    for module, file in zip(modules, expected, strict=True):
        obj = _safe_load(file)
        if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
            raise CheckpointError(f"checkpoint {file}: not a bare state dict (a mapping of names to tensors)")
        state.update({f"{module}.{key}": value for key, value in obj.items()})
    return state


SKIP_TF = re.compile(r"(/Adam(_\d+)?$|^beta[12]_power$|^Variable$|^global_step$)")
"""TensorFlow checkpoint entries that are not weights: Adam's slots and powers, the step counter (``tf.train.Saver``
saves every global variable); not read."""


def read_tf_release(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The TensorFlow checkpoint ``path`` as ``model``'s state dict, through the model's ``convert_release``."""
    convert = getattr(model, "convert_release", None)
    name = getattr(model, "registry_name", "") or type(model).__name__
    if convert is None:
        raise CheckpointError(
            f"checkpoint {path} is a TensorFlow checkpoint, but model {name!r} is not a TensorFlow release (it has no "
            "convert_release); give a PyTorch checkpoint"
        )
    try:
        return convert(read_tf_checkpoint(path, skip=SKIP_TF), source=str(path))
    except TFCheckpointError as err:
        raise CheckpointError(str(err)) from err


def read_caffe_release(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The ``.caffemodel`` ``path`` as ``model``'s state dict, through the model's ``convert_release``."""
    convert = getattr(model, "convert_release", None)
    name = getattr(model, "registry_name", "") or type(model).__name__
    if convert is None:
        raise CheckpointError(
            f"checkpoint {path} is a Caffe model, but model {name!r} is not a Caffe release (it has no "
            "convert_release); give a PyTorch checkpoint"
        )
    try:
        layers = read_caffemodel(path)
    except CaffeModelError as err:
        raise CheckpointError(str(err)) from err
    return convert(layers, source=str(path))


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch lists missing and unexpected keys and shape differences.

    ``path`` is a checkpoint file, or a folder of per-module files for a model that names them in
    ``release_modules`` (``read_module_folder``).
    """
    path = Path(path)
    if is_tf_checkpoint(path):
        state = read_tf_release(model, path)
    elif path.suffix == ".caffemodel":
        state = read_caffe_release(model, path)
    elif path.is_dir():
        modules = getattr(model, "release_modules", None)
        if not modules:
            name = getattr(model, "registry_name", "") or type(model).__name__
            raise CheckpointError(
                f"checkpoint {path} is a folder, but model {name!r} is released as a single file (it has no "
                "release_modules naming per-module files); give the checkpoint file itself"
            )
        # A .pkl the model does not read means another model's or variant's folder (the 1-2-4-8 folder holds all
        # of DMPHN-1-2-4's files plus level 4's): the folder counterpart of unexpected keys.
        extra = sorted(str(file) for file in path.glob("*.pkl") if file.stem not in modules)
        if extra:
            raise CheckpointError(
                f"checkpoint folder {path} holds module files this model does not have: {', '.join(extra)} (it "
                f"reads {', '.join(f'{m}.pkl' for m in modules)}); is it the release folder of this model and variant?"
            )
        state = read_module_folder(path, modules)
    else:
        state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or shapes:
        name = getattr(model, "registry_name", "") or type(model).__name__

        def listing(title: str, items: list[str]) -> str:
            shown = "\n    ".join(items[:20]) + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else "")
            return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

        raise CheckpointError(
            f"checkpoint {path} does not fit model {name!r}:"
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape differences", shapes)
            + "\n  Is it the right checkpoint for this model (and variant)?"
        )
    model.load_state_dict(state, strict=True)
    return model
