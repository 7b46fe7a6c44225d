"""`--engine auto|openvino|torch` and `--device`: which engine runs a model, opened from its `--model` spec.

auto: OpenVINO on the CPU where it is installed (no torch imported at all), torch on CUDA and MPS
and where OpenVINO is missing. Whether a GPU is there is asked of torch only when one may be: on
Linux without an NVIDIA or AMD GPU driver loaded, `--device auto` is the CPU without importing
torch (1-4 s of start-up); elsewhere torch is asked, as before.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from recolor.errors import ModelError, UsageError
from recolor.hub.registry import resolve_model

ENGINES = ("auto", "openvino", "torch")
OPENVINO_FIX = "pip install openvino (or use --engine torch)"


class Engine(Protocol):
    """What apply, films, eval and the Python API need of an engine."""

    name: str  # "openvino" or "torch"
    device: str  # "cpu", "cuda:0", "mps", ...
    precision: str  # "fp32", "bf16" or "fp16"
    on_gpu: bool

    def ab(self, lightness: np.ndarray) -> np.ndarray:
        """L (B, h, w) float32 in [0, 100], h and w multiples of 32 -> ab (B, 2, h, w) float32, natural units."""

    def threads(self, count: int | None):  # -> a context manager
        """The network's CPU threads set to `count` inside the block (None: left as they are)."""


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def gpu_may_be_present() -> bool:
    """False only where no GPU torch could use can be there: Linux without an NVIDIA or AMD (ROCm)
    driver loaded. Costs no import."""
    if platform.system() != "Linux":
        return True  # macOS has MPS; on Windows only torch can tell
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/kfd").exists()


def choose_engine(engine: str, device: str) -> str:
    """"openvino" or "torch" for `--engine` and `--device` (names as the CLI takes them)."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    device = device.strip().lower()
    if engine == "torch":
        return "torch"
    if engine == "openvino":
        if device not in ("auto", "cpu"):
            raise UsageError(f"--engine openvino runs on the CPU, not on {device!r}",
                             "use --device cpu, or --engine torch for a GPU")
        if not openvino_installed():
            raise UsageError("--engine openvino asked for, but OpenVINO is not installed", OPENVINO_FIX)
        return "openvino"
    if device == "cpu" or (device == "auto" and not gpu_may_be_present()):
        return "openvino" if openvino_installed() else "torch"
    if device == "auto":
        from recolor.devices import resolve_device  # imports torch: only where a GPU may be there

        if resolve_device("auto").type == "cpu":
            return "openvino" if openvino_installed() else "torch"
    return "torch"


def generator_stride(folder: Path) -> int:
    """The total stride of the generator in `folder` (its input's sides must be multiples of it), from
    config.json alone: 2 ** (depth + 1) for the note's U-Net, 32 for a pretrained encoder's."""
    import json

    from recolor.hub.files import CONFIG_NAME

    try:
        arguments = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("generator", {})
    except (OSError, ValueError) as error:
        raise ModelError(f"{folder / CONFIG_NAME} cannot be read ({error})", "re-download or re-train the model") from None
    if arguments.get("encoder", "unet") == "unet":
        return 2 ** (int(arguments.get("depth", 4)) + 1)
    return 32


def open_engine(model: str, *, engine: str = "auto", device: str = "auto", precision: str = "auto",
                offline: bool | None = None, notify: Callable[[str], None] = lambda line: None) -> Engine:
    """The engine that runs `model` (a built-in name, weights or run folder, or Hub id) on `device`.

    An OpenVINO engine reads the folder's export, made once and cached when the folder has none
    (`notify` gets one line then); a torch engine loads model.safetensors. Raises UsageError for
    names that do not exist here, ModelError for a model or export that cannot be used.
    """
    kind = choose_engine(engine, device)
    folder = resolve_model(model, offline=offline)
    if kind == "openvino":
        from recolor.engine.export import find_export
        from recolor.engine.openvino_cpu import OpenVINOEngine

        return OpenVINOEngine(find_export(folder, notify=notify).graph, precision=precision,
                              stride=generator_stride(folder))
    from recolor.devices import resolve_device
    from recolor.engine.torch_device import TorchEngine
    from recolor.nn.pretrained import load_generator

    torch_device = resolve_device(device)
    generator, _ = load_generator(folder, device=torch_device)
    return TorchEngine(generator, torch_device, precision=precision, keep_generator=False)
