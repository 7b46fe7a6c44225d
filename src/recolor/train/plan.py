"""Planning a run: a new run folder, or a resumed one whose checkpoint fixes what it trains."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from recolor.errors import TrainingError, UsageError
from recolor.train.recipes import Recipe, apply_overrides, get_recipe

from recolor.train.settings import CHECKPOINT_FORMAT, CHECKPOINT_NAME, METRICS_NAME, NETWORK_OVERRIDES, RESUME_CHANGEABLE, TrainSettings


@dataclass
class RunPlan:
    recipe_name: str
    recipe: Recipe
    overrides: dict[str, Any]
    settings: TrainSettings
    data: Path
    run_dir: Path
    checkpoint: dict[str, Any] | None


def _resolve_run_dir(resume: str, out: Path) -> Path:
    candidate = Path(resume)
    for folder in (candidate, out / resume):
        if (folder / CHECKPOINT_NAME).is_file():
            return folder
    raise UsageError(f"no run to resume at {resume!r}: neither {candidate} nor {out / resume} holds {CHECKPOINT_NAME}",
                     "give the run folder (runs/NAME) or its name under --out")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by this module (plain tensors and numbers: loaded with weights_only=True)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many untyped errors for damaged or foreign files
        raise TrainingError(f"{path} cannot be read ({str(error).splitlines()[0]})",
                            "the file is damaged; resume from a copy or start a new run") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a recolor training checkpoint", "start a new run with another --name")
    return checkpoint


def plan_run(recipe_name: str, data: Path | None, *, out: Path, name: str | None, resume: str | None,
          settings: dict[str, Any], overrides: dict[str, Any]) -> RunPlan:
    given_settings = {key: value for key, value in settings.items() if value is not None}
    unknown = set(given_settings) - {f.name for f in fields(TrainSettings)}
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}")
    given_overrides = {key: value for key, value in overrides.items() if value is not None}
    if resume is None:
        recipe = apply_overrides(get_recipe(recipe_name), given_overrides)
        if data is None:
            raise UsageError("no --data given", "point --data at a folder written by `recolor prepare`")
        run_dir = out / (name or recipe_name)
        if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / METRICS_NAME).exists():
            raise UsageError(f"{run_dir} already holds a run",
                             f"continue it with --resume {run_dir}, or choose another --name")
        return RunPlan(recipe_name, recipe, given_overrides, TrainSettings(**given_settings), Path(data), run_dir, None)

    run_dir = _resolve_run_dir(resume, out)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_NAME)
    if checkpoint["recipe_name"] != recipe_name:
        raise UsageError(f"{run_dir} was trained with recipe {checkpoint['recipe_name']!r}, not {recipe_name!r}",
                         f"resume it as `recolor train {checkpoint['recipe_name']} --resume {resume}`")
    saved_settings = TrainSettings(**checkpoint["settings"])
    for key, value in given_settings.items():
        if key not in RESUME_CHANGEABLE and value != getattr(saved_settings, key):
            raise UsageError(f"--{key.replace('_', '-')} {value} differs from the run's {getattr(saved_settings, key)}",
                             f"a resumed run keeps it; leave the option out or start a new run")
    for key in NETWORK_OVERRIDES & set(given_overrides):
        if given_overrides[key] != checkpoint["overrides"].get(key):
            raise UsageError(f"--{key.replace('_', '-')} changes the networks of {run_dir}",
                             "a resumed run keeps its networks; start a new run instead")
    merged = {**checkpoint["overrides"], **given_overrides}
    if "recon_weight" in given_overrides:
        merged.pop("recon_schedule", None)
    if "recon_schedule" in given_overrides:
        merged.pop("recon_weight", None)
    recipe = apply_overrides(get_recipe(recipe_name), merged)
    saved_data = Path(checkpoint["data"])
    return RunPlan(recipe_name, recipe, merged, replace(saved_settings, **given_settings),
                 Path(data) if data is not None else saved_data, run_dir, checkpoint)
