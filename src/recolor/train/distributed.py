"""Distributed setup: join torchrun's process group (gloo on CPUs, nccl on CUDA) and agree across ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist




@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_name: str) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Single process when WORLD_SIZE is absent or 1. Backend: nccl for CUDA, gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if torch_dist.is_initialized():
        return DistContext(rank, world_size, local_rank, initialized_here=False)
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank, initialized_here=True)


def all_agree(ctx: DistContext, flag: bool, *, any_rank: bool) -> bool:
    """Combine a boolean over ranks: True if any rank (any_rank) or every rank has it."""
    if not ctx.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX if any_rank else torch_dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        torch_dist.barrier()
