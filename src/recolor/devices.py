"""Turning a device name from the command line into a `torch.device`, with a clear error if it is absent."""

from __future__ import annotations

import torch

from recolor.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `cuda:N` or `mps` -> a device that exists here.

    Raises UsageError (exit code 2) when the named device is not available on this machine, rather
    than letting torch fail later with a long traceback in the middle of a run.
    """
    text = name.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}", f"use one of {', '.join(DEVICE_CHOICES)}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} asked for, but CUDA is not available on this machine",
                             "use --device cpu (or auto), or install a CUDA build of torch")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"device {name!r} asked for, but this machine has {count} CUDA device(s)",
                             f"use cuda:0 .. cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise UsageError(f"device {name!r} asked for, but MPS (Apple GPU) is not available here",
                             "use --device cpu (or auto)")
        return device
    raise UsageError(f"unsupported device {name!r}", f"use one of {', '.join(DEVICE_CHOICES)}")
