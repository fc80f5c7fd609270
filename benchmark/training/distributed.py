"""Process groups for data-parallel training: torchrun (and SLURM tasks) in, a small typed handle out.

``python -m benchmark.train`` runs as one process, or as N ranks under ``torchrun --nproc_per_node=N -m
benchmark.train ...``, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. A
SLURM job launched by Hydra's submitit launcher (``conf/hydra/launcher/slurm.yaml``, one task per GPU) has none of
these; there ``submitit.helpers.TorchDistributedEnvironment`` derives them from the SLURM variables and exports them
before the process group starts.

The backend is NCCL when the ranks train on CUDA and gloo on the CPU (the CI test runs 2 gloo ranks on one machine).
Everything here is a no-op for a single process, so the training loop has one code path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "all_gather_objects", "barrier", "detect", "init", "reduce_mean", "shutdown"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, ``0 <= rank < world_size``; rank 0 writes checkpoints and MLflow records.
        world_size: Number of processes training together (1 = plain single-process training).
        local_rank: Rank on this machine: the CUDA device index a rank trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer (set by torchrun/SLURM)") from None


def detect() -> DistEnv:
    """The rank layout from the environment: torchrun's variables, else a multi-task submitit SLURM job, else 1."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        env = DistEnv(
            rank=_int_env("RANK"),
            world_size=_int_env("WORLD_SIZE"),
            local_rank=_int_env("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0,
        )
    elif "SUBMITIT_EXECUTOR" in os.environ and _submitit_tasks() > 1:
        # One task per rank, started by the submitit launcher (SLURM, or its local executor): submitit knows the
        # job's hosts and exports what torch.distributed's env:// rendezvous reads (MASTER_ADDR/PORT, RANK,
        # WORLD_SIZE, LOCAL_RANK). Every task keeps seeing all of the node's GPUs (set_cuda_visible_devices=False),
        # so rank r trains on cuda:<local rank>; overwrite=True because a user may have set MASTER_PORT, which
        # submitit honours but would otherwise refuse to export over.
        from submitit.helpers import TorchDistributedEnvironment

        tde = TorchDistributedEnvironment()
        tde.export(set_cuda_visible_devices=False, overwrite=True)
        env = DistEnv(rank=tde.rank, world_size=tde.world_size, local_rank=tde.local_rank)
    else:
        return DistEnv()
    if not 0 <= env.rank < env.world_size or env.world_size < 1:
        raise RuntimeError(f"inconsistent distributed environment: RANK={env.rank}, WORLD_SIZE={env.world_size}")
    return env


def _submitit_tasks() -> int:
    """Tasks of the submitit job this process belongs to (``submitit>=1.4.5``, the ``slurm`` extra)."""
    try:
        from submitit import JobEnvironment
    except ImportError:
        raise RuntimeError(
            "this process runs in a submitit job, but submitit is not importable; pip install -e '.[slurm]'"
        ) from None
    return int(JobEnvironment().num_tasks)


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU); nothing for a single process."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Ranks > 0 wait at barriers while rank 0 alone decodes the training cache (minutes for GoPro's 4,206 images) or
    # validates: NCCL's default timeout (10 minutes) would abort such a wait, so allow an hour.
    dist.init_process_group(
        backend=backend, rank=env.rank, world_size=env.world_size, timeout=datetime.timedelta(hours=1)
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over all ranks (each rank passes a tensor of the same shape); unchanged alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (what DDP does at construction, for a module it does not wrap:
    a GAN's discriminator, initialised per rank after the per-rank re-seeding); no-op alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if isinstance(tensor, torch.Tensor):
                dist.broadcast(tensor, src=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` alone); used for the per-rank RNG states of a checkpoint."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
