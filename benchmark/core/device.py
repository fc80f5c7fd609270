"""Which device a run computes on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked before any work starts."""

from __future__ import annotations

import torch

from benchmark.core.errors import ConfigError


def select_device(name: str, local_rank: int | None = None, *, key: str = "train.device") -> torch.device:
    """``auto`` = CUDA when available, else CPU; under torchrun (``local_rank`` given) rank r takes ``cuda:<r>``.

    Raises:
        ConfigError: naming ``key``, for CUDA on a machine without it, or a fixed ``cuda:N`` in a multi-process job
            (every rank would train on that one GPU).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if local_rank is not None and name.startswith("cuda:"):
        raise ConfigError(
            f"{key}: {name} would put every rank of a multi-process job on one GPU; use device=cuda or auto "
            "(each rank then takes the GPU of its local rank)"
        )
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {name} requested but CUDA is not available; use device=cpu or auto")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): timings must not stop before the kernels do."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
