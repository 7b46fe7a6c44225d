"""Batches for the loop: a resumable distributed sampler, worker signals, crops and flips on the device."""

from __future__ import annotations

import signal
from typing import Iterator

import torch
from torch.utils.data import DistributedSampler, Sampler


from recolor.train.distributed import DistContext


class ResumableSampler(Sampler[int]):
    """DistributedSampler (its shuffle depends only on seed and epoch) that can skip a done prefix."""

    def __init__(self, dataset, *, ctx: DistContext, seed: int) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                        seed=seed, drop_last=True)
        self.skip = 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip:])

    def __len__(self) -> int:
        return len(self.inner) - self.skip


def worker_signals(_worker_id: int) -> None:
    # Ctrl-C goes to the whole process group: workers must outlive it so the main process can
    # finish its batch and save a checkpoint. SIGTERM gets its default back (a forked worker
    # inherits the main process's "stop after this batch" handler), so shutting workers down works.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image crops and horizontal flips of a batch (N, C, H, W), in one gather on its device.

    offsets (N, 2) = (top, left) of each size x size crop; flips (N,) bool. Returns (N, C, size, size)
    laid out channels-last in memory (the gather's natural order).
    """
    n = images.shape[0]
    device = images.device
    steps = torch.arange(size, device=device)
    rows = offsets[:, :1].to(device) + steps
    cols = offsets[:, 1:].to(device) + steps
    cols = torch.where(flips.to(device)[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top:top + size, left:left + size]
