"""Data-parallel setup for training: one process per device, started by `torchrun`.

A run without a launcher (no `WORLD_SIZE` in the environment, or `WORLD_SIZE=1`) is a single
process and needs no process group. Under `torchrun`, each process joins the group from the
environment torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`): the
`nccl` backend on GPUs, `gloo` on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ElmoError


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    """Global index of this process."""
    world_size: int = 1
    """Number of processes."""
    device: torch.device = torch.device("cpu")
    """The device this process trains on."""

    @property
    def enabled(self) -> bool:
        """True when there is more than one process (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes checkpoints, metrics and logs."""
        return self.rank == 0

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the processes (in place; returned for convenience)."""
        if self.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable), in rank order, on every process."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str | None = None) -> Distributed:
    """Join the process group torchrun describes, or describe a single process.

    Args:
        device: `cpu`, `cuda`, or None for a GPU when one is available.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ElmoError("--device cuda: no GPU is available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank=rank, world_size=world_size, device=chosen)
