"""Weights folders: `config.json` (what builds the network) + `model.safetensors`.

The same layout serves run folders, the weights shipped in the package and Hub repos, so any of
them loads through `load_generator`. Only safetensors are read: never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from recolor import __version__
from recolor.errors import ModelError
from recolor.nn.unet import UNetGenerator

# The generator's `encoder` entry in config.json -> the class that builds it. Configs written before
# pretrained encoders existed have no `encoder` entry: they are the note's U-Net.
UNET = "unet"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURE = "recolor-unet"


def make_generator(*, encoder: str = UNET, width: int, norm: str, depth: int = 4) -> torch.nn.Module:
    """A new generator: the note's U-Net (`encoder="unet"`, `depth` levels) or one on a pretrained encoder."""
    if encoder == UNET:
        return UNetGenerator(width=width, depth=depth, norm=norm)
    from recolor.nn.encoder_unet import EncoderUNetGenerator

    return EncoderUNetGenerator(encoder=encoder, width=width, norm=norm)


def build_generator(config: dict[str, Any]) -> torch.nn.Module:
    """The generator a config.json describes (its `generator` entry holds the constructor arguments)."""
    if config.get("architecture") != ARCHITECTURE or "generator" not in config:
        raise ModelError(
            f"config.json describes {config.get('architecture')!r}, not a recolor generator",
            "point --model at a folder written by `recolor train` or a recolor Hub repo",
        )
    arguments = dict(config["generator"])
    encoder = arguments.pop("encoder", UNET)
    if encoder == UNET:
        return UNetGenerator(**arguments)
    from recolor.nn.encoder_unet import EncoderUNetGenerator
    from recolor.nn.encoders import ENCODERS

    if encoder not in ENCODERS:
        raise ModelError(f"config.json names the encoder {encoder!r}, which this recolor does not know",
                         f"upgrade recolor-cli (this one knows {', '.join([UNET, *ENCODERS])})")
    return EncoderUNetGenerator(encoder=encoder, **arguments)


def save_generator(generator: torch.nn.Module, folder: str | Path, *, metadata: dict[str, Any] | None = None,
                   half: bool = False) -> Path:
    """Write `folder/config.json` and `folder/model.safetensors` (fp16 with `half`); returns folder.

    Both files go through a temporary name and a rename, so a reader never sees half a file.
    """
    from recolor.io.atomic import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architecture": ARCHITECTURE, "generator": dict(generator.config), "recolor_version": __version__,
              **(metadata or {})}
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in generator.state_dict().items()}
    if half:
        state = {name: t.half() if t.is_floating_point() else t for name, t in state.items()}
    weights = save(state, metadata={"format": "pt"})
    atomic_write(folder / WEIGHTS_NAME, lambda f: f.write(weights))
    atomic_write(folder / CONFIG_NAME, lambda f: f.write(json.dumps(config, indent=2).encode()))
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} does not exist", "a model folder holds config.json and model.safetensors") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is not valid JSON ({error})", "re-download or re-train the model") from None


def load_generator(folder: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The generator saved in `folder`, in eval mode and float32, with its config."""
    folder = Path(folder)
    config = read_config(folder)
    generator = build_generator(config)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{weights} does not exist", "a model folder holds config.json and model.safetensors")
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises its own untyped errors for damaged files
        raise ModelError(f"{weights} cannot be read ({error})", "re-download or re-train the model") from None
    state = {name: t.float() if t.is_floating_point() else t for name, t in state.items()}
    try:
        generator.load_state_dict(state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelError(f"{weights} does not match its config.json ({first_line})",
                         "the folder mixes files of different models") from None
    return generator.to(device).eval(), config
