"""The generator run by torch: on CUDA or MPS, and on the CPU where OpenVINO is not installed (or
with `--engine torch`).

On the CPU the network runs from an inference copy of the generator (BatchNorms folded,
channels_last, bf16 where the CPU has native bf16: see PRECISIONS), in calls small enough for
glibc to reuse their memory.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np
import torch

from recolor.colorspace import AB_SCALE
from recolor.errors import UsageError

# The network's number format: auto is bf16 on CPUs that compute it natively (AMX or AVX-512 BF16:
# 3 to 4 times as fast as fp32, outputs within a fraction of one ab unit; see
# benchmarks/apply_speed.py --precision-check), fp16 on CUDA, fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
# Pixels per network call on the CPU (two 256 px images), so that no activation of one call is
# above the 32 MiB beyond which glibc always unmaps freed blocks (calls of 8 images at 256 px
# reach 34 MB). Whether smaller blocks are reused depends on malloc's history: on an idle machine
# calls of 2, 4 and 8 images page-fault 0-23,000, 0-22,000 and 8,000-36,000 times per 8 images and
# cost 16.8-22.2, 16.0-20.9 and 17.7-21.0 CPU ms per image, run to run
# (benchmarks/page_faults.py): no reliable difference in time.
CPU_NETWORK_PIXELS = 2 * 256 * 256


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16), so that oneDNN's
    bf16 convolutions beat fp32 ones."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence looked up
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision` ("auto", "fp32" or "bf16") -> the one the network runs in on `device`: "fp32",
    "bf16" or (auto on CUDA) "fp16". Raises UsageError for other names."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _fold_batch_norms(module: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into the conv's weights and
    bias, in place: the same function, one pass over each activation fewer.

    "Directly follows" is the order of a module's children: the order they run in for an
    nn.Sequential (the note's ConvBlocks) and for timm's EfficientNet blocks (conv_pw, bn1,
    conv_dw, bn2, ...), whose BatchNormAct2d keeps its activation: the norm is replaced by what
    comes after it (dropout, identity at eval, then the activation).
    tests/nn/test_encoders.py checks that the folded EfficientNet generator computes what the
    unfolded one does, with BatchNorm statistics far from the identity.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if not (isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
                    and norm.track_running_stats and not norm.training):
                continue
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
            after = [part for part in (getattr(norm, "drop", None), getattr(norm, "act", None)) if part is not None]
            setattr(parent, norm_name, torch.nn.Sequential(*after) if after else torch.nn.Identity())


def _channels_last_input(lightness: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 1, H, W) -> the same values in `dtype`, laid out so that torch takes them as channels_last.

    A one-channel tensor is contiguous in both layouts and torch then calls it NCHW: the U-Net's
    last torch.cat of its channels_last features with L fell back to a generic copy, most of the
    40% of the network's time that torch.profiler gave the concatenations. The strides of a view
    into a two-channel buffer leave no doubt.
    """
    n, _, height, width = lightness.shape
    view = torch.empty((n, height, width, 2), dtype=dtype)[..., :1].permute(0, 3, 1, 2)
    return view.copy_(lightness)


class TorchEngine:
    """Runs the generator on batches of render-size L (on `device`); everything else stays on the CPU.

    `ab` takes L (B, h, w) in [0, 100] as numpy and returns ab (B, 2, h, w) in natural units as numpy
    float32 (the interface of every engine); `ab_tensor` the same in torch tensors, optionally left
    on the device for a join there.

    `precision`: see PRECISIONS. On the CPU the network runs from a copy of the generator made for
    inference: BatchNorms folded into the convolutions, channels_last, in bf16 when that is the
    precision (whole-model bf16 rather than autocast, which runs the U-Net's upsampling in fp32 and
    then concatenates mixed types: 14% slower here). With `keep_generator` False that copy is made
    in place, from `generator` itself (the CLI, which has no other use for it: less start-up time
    and memory).
    """

    def __init__(self, generator: torch.nn.Module, device: torch.device, *, precision: str = "auto",
                 keep_generator: bool = True) -> None:
        self.generator = generator.eval()
        self.stride = getattr(generator, "stride", 1)
        self.torch_device = device
        self.device = str(device)
        self.on_gpu = device.type != "cpu"
        self.precision = resolve_precision(precision, device)
        self._network = self.generator
        if device.type == "cpu":
            self._network = copy.deepcopy(self.generator) if keep_generator else self.generator
            _fold_batch_norms(self._network)
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._network.to(dtype=dtype, memory_format=torch.channels_last)

    name = "torch"

    def ab(self, lightness: np.ndarray) -> np.ndarray:
        return self.ab_tensor(torch.from_numpy(np.ascontiguousarray(lightness, dtype=np.float32))).numpy()

    def threads(self, count: int | None) -> contextlib.AbstractContextManager[None]:
        """torch's intra-op threads set to `count` inside the block (None: left as they are)."""
        return torch_threads(count)

    @torch.inference_mode()
    def ab_tensor(self, lightness_batch: torch.Tensor, *, on_device: bool = False) -> torch.Tensor:
        """L (B, h, w) in [0, 100] -> ab (B, 2, h, w) in natural units, float32 on the CPU (with
        `on_device`: left on the network's device, for a join there)."""
        l_norm = lightness_batch[:, None] / 50 - 1
        if not self.on_gpu:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            step = max(1, CPU_NETWORK_PIXELS // (l_norm.shape[-2] * l_norm.shape[-1]))
            ab_norm = torch.cat([self._network(_channels_last_input(l_norm[start:start + step], dtype))
                                 for start in range(0, len(l_norm), step)])
        else:
            # Half precision on CUDA: the U-Net's output is a tanh, and the Lab join runs in float32.
            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
            with torch.autocast(self.torch_device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                ab_norm = self._network(l_norm.to(self.torch_device))
            if on_device:
                return ab_norm.float() * AB_SCALE
        # contiguous: a channels_last result would reach the join's OpenCV code with strided rows.
        return (ab_norm.float().cpu() * AB_SCALE).contiguous()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: left alone) inside the block."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
