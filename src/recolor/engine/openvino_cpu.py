"""The generator's export run by OpenVINO's CPU plugin: numpy in, numpy out, no torch.

OpenVINO compiles the graph once with free batch, height and width (a render shape not seen before
costs about 10 ms once: benchmarks/engines.py), in bf16 where the CPU multiplies bf16 in
hardware and in f32 elsewhere. The precision is always set: OpenVINO's own default is bf16 wherever
AVX-512 exists, where bf16 is emulated and no faster. docs/performance.md has the figures.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

import numpy as np

from recolor.colorspace import AB_SCALE
from recolor.errors import ModelError, UsageError

PRECISIONS = ("auto", "fp32", "bf16")
_HINTS = {"fp32": "f32", "bf16": "bf16"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX), read from the kernel's flags.

    Not OpenVINO's OPTIMIZATION_CAPABILITIES, whose "BF16" means AVX-512 (bf16 emulated by
    conversions, no faster than f32). Other systems than Linux: False (f32).
    """
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str) -> str:
    """"auto", "fp32" or "bf16" -> what the CPU plugin computes in: "bf16" or "fp32"."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


class OpenVINOEngine:
    """The export at `graph` on the CPU. `ab` takes L (B, h, w) in [0, 100] and returns ab (B, 2, h, w)
    in natural units (about -110..110), float32; the batch runs in `threads` threads (None: OpenVINO's
    own choice, every core), settable per block with `threads()`."""

    name = "openvino"
    device = "cpu"
    on_gpu = False

    def __init__(self, graph: str | os.PathLike[str], *, precision: str = "auto", stride: int = 32) -> None:
        import openvino as ov

        self.precision = resolve_precision(precision)
        self.stride = stride  # the input's sides must be multiples of it (the generator's total stride)
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(graph))
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"{graph} cannot be read by OpenVINO ({first_line})",
                             "delete the export files beside it: recolor makes them again") from None
        self._threads: int | None = None
        self._requests: dict[int | None, Any] = {}

    @contextlib.contextmanager
    def threads(self, count: int | None) -> Iterator[None]:
        """The network's threads set to `count` inside the block (None: left as they are)."""
        before = self._threads
        if count is not None:
            self._threads = count
        try:
            yield
        finally:
            self._threads = before

    def _request(self) -> Any:
        request = self._requests.get(self._threads)
        if request is None:
            config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                                      "PERFORMANCE_HINT": "LATENCY"}  # one stream: every thread on one call
            if self._threads is not None:
                config["INFERENCE_NUM_THREADS"] = int(self._threads)
            compiled = self._core.compile_model(self._model, "CPU", config)
            request = self._requests[self._threads] = compiled.create_infer_request()
        return request

    def ab(self, lightness: np.ndarray) -> np.ndarray:
        lightness = np.asarray(lightness, dtype=np.float32)
        if lightness.ndim != 3 or lightness.shape[1] % self.stride or lightness.shape[2] % self.stride:
            raise ValueError(f"L must be (B, h, w) with h and w multiples of {self.stride}, got {lightness.shape}")
        l_norm = lightness[:, None] * np.float32(1 / 50) - np.float32(1)
        request = self._request()
        request.infer({0: l_norm})
        # The output's memory belongs to the request and is overwritten by its next call: a new array.
        return np.multiply(request.get_output_tensor(0).data, np.float32(AB_SCALE))


