"""The models `recolor eval` scores: the gray baseline and each MODEL, run through the engine apply
uses (OpenVINO on the CPU, torch on a GPU), so the table scores what apply ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from recolor.colorspace import AB_SCALE
from recolor.errors import RecolorError, UsageError

if TYPE_CHECKING:
    from recolor.engine.choice import Engine

# The baseline row: ab = 0, the true L as a gray photo.
GRAY = "gray"


@dataclass
class ScoredModel:
    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]  # L in [-1, 1] (N, 1, H, W) -> ab in [-1, 1] (N, 2, H, W)


def _gray(l_norm: torch.Tensor) -> torch.Tensor:
    return l_norm.new_zeros(l_norm.shape[0], 2, *l_norm.shape[2:])


def _load_model(spec: str, device: torch.device, *, engine: str = "auto", precision: str = "auto") -> Engine:
    """The engine that runs `spec` as `recolor apply --engine ENGINE --precision PRECISION` runs it, so
    that eval scores what apply ships (OpenVINO on the CPU where installed, torch on a GPU)."""
    from recolor.engine.choice import open_engine

    return open_engine(spec, engine=engine, device=str(device), precision=precision)


def _predictor(engine: Engine, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """L in [-1, 1] (N, 1, H, W) on `device` -> ab in [-1, 1] (N, 2, H, W) on `device`, through `engine`."""
    if engine.name == "torch" and engine.on_gpu:  # no round trip through the host
        return lambda l_norm: engine.ab_tensor((l_norm[:, 0] + 1) * 50, on_device=True) / AB_SCALE

    def predict(l_norm: torch.Tensor) -> torch.Tensor:
        ab = engine.ab(((l_norm[:, 0] + 1) * 50).float().cpu().numpy())
        return torch.from_numpy(ab).to(device) / AB_SCALE

    return predict


def _builtin_names() -> list[str]:
    from recolor.hub.registry import BUILTIN_MODELS

    return list(BUILTIN_MODELS)


def load_models(specs: Sequence[str], *, all_builtin: bool, device: torch.device, size: int,
                unavailable: dict[str, str], engine: str = "auto", precision: str = "auto") -> list[ScoredModel]:
    """The models to score after `gray`, resolved as `recolor apply` resolves --model.

    A model named on the command line that cannot load is an error; a built-in added by --all that
    cannot load (weights neither shipped nor downloadable) is recorded in `unavailable` and left out.
    """
    wanted = [(spec, True) for spec in dict.fromkeys(specs)]
    if all_builtin:
        wanted += [(name, False) for name in _builtin_names() if name not in specs]
    models = [ScoredModel(GRAY, _gray)]
    for spec, explicit in wanted:
        if spec == GRAY:
            raise UsageError("'gray' is the baseline row, always present", "leave it out of the MODEL list")
        try:
            runner = _load_model(spec, device, engine=engine, precision=precision)
        except RecolorError as error:
            if explicit:
                raise
            unavailable[spec] = error.cause  # its fix speaks of --model, which eval spells MODEL
            continue
        stride = runner.stride
        if size % stride:
            raise UsageError(f"model {spec} needs an input size that is a multiple of {stride}, not {size}",
                             f"use --size {max(stride, size // stride * stride)}")
        models.append(ScoredModel(spec, _predictor(runner, device)))
    return models
