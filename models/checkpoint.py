"""Load weights from any release format into a registered model, safely.

Formats (``torch.load(..., weights_only=True)`` for all: a checkpoint can never run code):
- ``{"model": state_dict, ...}``: MIMO-UNet, MSFS-Net (``model.pkl``) and this harness's own checkpoints;
- ``{"params": state_dict}``: BasicSR-style releases (NAFNet, HINet);
- ``{"state_dict": state_dict, ...}``: MPRNet (keys may carry DataParallel's ``module.`` prefix, stripped here);
- a bare state dict.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

WRAPPER_KEYS = ("model", "params", "state_dict", "params_ema")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the differences."""


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read the state dict stored in ``path`` in any supported release format (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or run the train stage first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} was refused by the safe loader (weights_only=True): it holds objects other than "
            f"tensors and plain containers, which could run code when unpickled. Re-save its state_dict only. ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable or truncated ({err}); download or train it again"
        ) from err
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


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch lists missing and unexpected keys and shape differences."""
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
