"""Distributed data parallel set-up from torchrun's environment (RANK, WORLD_SIZE, ...)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistributedContext:
    """Join the process group torchrun prepared (gloo on CPU, nccl on GPU); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, world_size, local_rank)


def per_rank_batch_size(global_batch_size: int, context: DistributedContext) -> int:
    """train_config.batch_size is the global batch; each rank takes an equal share."""
    if global_batch_size % context.world_size:
        from objdet.errors import ConfigError

        raise ConfigError(
            f"train_config.batch_size {global_batch_size} is not divisible by the "
            f"{context.world_size} processes"
        )
    return global_batch_size // context.world_size
