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


def disable_tf32() -> str:
    """Turn TF32 off for matmuls and cuDNN convolutions; returns ``"disabled"`` for the record.

    PyTorch allows TF32 in cuDNN convolutions by default, so an Ampere or Hopper GPU would evaluate with a 10-bit
    mantissa; the releases' numbers were computed in full fp32 (their code predates TF32 or ran on older GPUs). The
    flags are process-wide, which is what an evaluation process wants.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return "disabled"
