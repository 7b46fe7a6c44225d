"""Splitting one `recolor apply` run across processes, GPUs or machines.

Two ways in, one split:

- `--shard K/N` (for any scheduler: a SLURM array, `xargs -P`, several machines on a shared disk):
  this process does part K of N.
- `torchrun --nproc-per-node N -m recolor apply ...`: torchrun's RANK and WORLD_SIZE name the
  part; each rank takes the GPU of its LOCAL_RANK, and rank 0 prints one summary for all of them
  (gathered over torch.distributed's gloo backend, which needs no GPU).
- Both at once: the shard's part is split again across the ranks.

The split is over every planned output, done or not, ordered by its path relative to the output
folder: part K takes the outputs at positions K-1, K-1+N, K-1+2N, ... So every process that is
given the same INPUTs and --out gets the same parts, whatever the others have done already (each
part resumes on its own: its finished outputs are skipped), the parts differ in size by at most
one photo, and a mount point that differs from machine to machine does not matter.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recolor.errors import UsageError

if TYPE_CHECKING:
    from recolor.apply.pipeline import Summary
    from recolor.apply.plan import Plan

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Part `index` (0-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`--shard K/N` (1 <= K <= N) -> Shard(K - 1, N); anything else is a UsageError."""
    match = _SHARD.match(text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard {text!r} is not K/N with 1 <= K <= N", "e.g. --shard 1/4 ... --shard 4/4")
    return Shard(int(match[1]) - 1, int(match[2]))


@dataclass(frozen=True)
class Launch:
    """What torchrun told this process: its rank among `world_size`, and on its machine."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)


def launch_from_env(environ: Mapping[str, str] = os.environ) -> Launch | None:
    """The torchrun launch this process is part of (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE),
    or None when it runs alone (no WORLD_SIZE, or 1)."""
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return None
        rank = int(environ["RANK"])
        local_rank = int(environ.get("LOCAL_RANK", rank))
        local_world_size = int(environ.get("LOCAL_WORLD_SIZE", world_size))
    except (KeyError, ValueError):
        raise UsageError("WORLD_SIZE is set but RANK, LOCAL_RANK or LOCAL_WORLD_SIZE is missing or not a number",
                         "start recolor with torchrun, or unset WORLD_SIZE") from None
    if not 0 <= rank < world_size:
        raise UsageError(f"RANK {rank} is outside WORLD_SIZE {world_size}", "start recolor with torchrun")
    return Launch(rank, world_size, local_rank, max(1, local_world_size))


def combine(outer: Shard | None, inner: Shard | None) -> Shard | None:
    """Part `inner` of part `outer`, as one part of the whole: splitting every N-th photo again
    every W-th is taking every (N * W)-th."""
    if outer is None or inner is None:
        return outer or inner
    return Shard(outer.index + outer.count * inner.index, outer.count * inner.count)


def split_plan(plan: Plan, shard: Shard | None) -> Plan:
    """The part of `plan` (its jobs and its skipped ones) that `shard` does; `plan` itself for None."""
    if shard is None:
        return plan

    def key(job: Any) -> str:
        try:
            return job.output.relative_to(plan.out).as_posix()
        except ValueError:
            return str(job.output)

    ordered = sorted(plan.jobs + plan.skipped, key=key)
    mine = {id(job) for position, job in enumerate(ordered) if position % shard.count == shard.index}
    return dataclasses.replace(plan, jobs=[j for j in plan.jobs if id(j) in mine],
                               skipped=[j for j in plan.skipped if id(j) in mine])


def device_for(name: str, launch: Launch | None) -> str:
    """`--device` for this rank: one GPU per rank (its LOCAL_RANK) when the name leaves the index
    open (auto, cuda) and CUDA is there; the name as given otherwise."""
    if launch is None or name.strip().lower() not in ("auto", "cuda"):
        return name
    import torch

    if not torch.cuda.is_available():
        return name
    return f"cuda:{launch.local_rank % torch.cuda.device_count()}"


def cores_for(launch: Launch | None) -> int:
    """CPU cores this process may use: the machine's, shared evenly by torchrun's ranks on it."""
    cores = os.cpu_count() or 1
    return cores if launch is None else max(1, cores // launch.local_world_size)


def join_group(launch: Launch | None) -> None:
    """Join torchrun's process group (gloo: CPU only, so it works beside any device) once."""
    if launch is None:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def gather_summaries(summary: Summary, launch: Launch | None) -> Summary | None:
    """One summary for the whole run: on rank 0 the counts of every rank added up (failures of all,
    the longest time); None on the other ranks. Without torchrun, `summary` itself."""
    if launch is None:
        return summary
    import torch.distributed as dist

    everyone: list[Any] = [None] * launch.world_size
    dist.all_gather_object(everyone, summary)
    dist.destroy_process_group()
    if launch.rank != 0:
        return None
    return dataclasses.replace(summary, done=sum(s.done for s in everyone), skipped=sum(s.skipped for s in everyone),
                               failed=[result for s in everyone for result in s.failed],
                               seconds=max(s.seconds for s in everyone))
