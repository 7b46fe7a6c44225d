"""Making the inference export of a weights folder: the generator as OpenVINO IR with fp16 weights,
beside `config.json` and `model.safetensors`, so that `recolor apply` runs it without torch (the
files and their record: `recolor.hub.exports`).

IR with fp16 weights rather than ONNX: half the size (9.1 MB against 17.7 for the shipped models)
and as fast (benchmarks/engines.py; docs/performance.md); OpenVINO converts the torch module itself
(`openvino.convert_model`), so making an export needs torch and openvino, not the onnx package.

A folder without an export (runs and Hub repos made before exports existed) gets one made once, with
torch, and cached: in the folder itself when it is a local folder this user can write to, else in
`HF_HUB_CACHE/recolor-exports/<sha256 of model.safetensors>/` (Hub snapshots are not ours to write
into). An export that does not match its weights, or whose files do not match export.json, is an
error naming the file: never a silent fallback to other weights.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recolor import __version__
from recolor.errors import ModelError
from recolor.hub.exports import (
    EXPORT_FILES,
    FORMAT,
    GRAPH_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    RECORD_NAME,
    Export,
    cache_folder,
    check_export,
)
from recolor.hub.files import CONFIG_NAME, WEIGHTS_NAME, file_sha256

# The shape traced: the render shape of a 3:2 landscape photo at the default render size.
EXAMPLE_SHAPE = (1, 1, 160, 256)


def _writable_here(folder: Path) -> bool:
    """A local folder this user can write into, and not a snapshot of the Hub cache."""
    from huggingface_hub import constants

    hub_cache = Path(constants.HF_HUB_CACHE).resolve()
    resolved = folder.resolve()
    return not resolved.is_relative_to(hub_cache) and os.access(resolved, os.W_OK)


def find_export(folder: str | os.PathLike[str], *, make: bool = True,
                notify: Callable[[str], None] = lambda line: None) -> Export:
    """The checked export of the weights folder `folder`, made (with torch) and cached if it has none.

    `notify` gets one line when an export is made. Raises ModelError when an export exists but does not
    match (never made over it), or when `make` is False and there is none.
    """
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{weights} does not exist", "a model folder holds config.json and model.safetensors")
    weights_sha256 = file_sha256(weights)
    if (folder / RECORD_NAME).exists() or any((folder / name).exists() for name in EXPORT_FILES):
        return check_export(folder, weights_sha256)
    cached = cache_folder(weights_sha256)
    if (cached / RECORD_NAME).exists():
        return check_export(cached, weights_sha256)
    if not make:
        raise ModelError(f"{folder} has no inference export ({GRAPH_NAME})",
                         "run it once with torch installed, or use --engine torch")
    target = folder if _writable_here(folder) else cached
    notify(f"{folder} has no OpenVINO export: making one from {WEIGHTS_NAME} (once; kept in {target})")
    from recolor.nn.pretrained import load_generator

    generator, _ = load_generator(folder, device="cpu")
    write_export(generator, target, weights_sha256=weights_sha256)
    return Export(graph=target / GRAPH_NAME, folder=target, weights_sha256=weights_sha256, made_now=True)


def write_export(generator: Any, folder: str | os.PathLike[str], *, weights_sha256: str) -> Path:
    """Write the export of `generator` (a torch module; float32, CPU, eval) into `folder`, recorded as
    made from weights whose model.safetensors has `weights_sha256`; returns the graph's path.

    The files are written into a temporary folder beside the target and moved in, export.json last,
    so a reader sees either no export or a whole one.
    """
    import openvino as ov
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    network = copy.deepcopy(generator).float().to("cpu").eval()  # the caller's module is left as it is
    with torch.inference_mode(False), torch.no_grad(), tempfile.TemporaryDirectory(dir=folder) as scratch:
        model = ov.convert_model(network, example_input=torch.zeros(EXAMPLE_SHAPE),
                                 input=[ov.PartialShape([-1, 1, -1, -1])])
        model.inputs[0].get_tensor().set_names({INPUT_NAME})
        model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
        staged = Path(scratch)
        ov.save_model(model, str(staged / GRAPH_NAME), compress_to_fp16=True)
        record = {
            "format": FORMAT,
            "files": {name: file_sha256(staged / name) for name in EXPORT_FILES},
            "weights_sha256": weights_sha256,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "recolor_version": __version__,
            "openvino_version": ov.get_version(),
            "torch_version": torch.__version__,
        }
        (staged / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for name in (*EXPORT_FILES, RECORD_NAME):
            os.replace(staged / name, folder / name)
    return folder / GRAPH_NAME


def export_folder(folder: str | os.PathLike[str]) -> Path:
    """Write (or rewrite) the export of the weights folder `folder` from its model.safetensors."""
    from recolor.nn.pretrained import load_generator

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise ModelError(f"{folder / CONFIG_NAME} does not exist", "a model folder holds config.json and model.safetensors")
    generator, _ = load_generator(folder, device="cpu")
    return write_export(generator, folder, weights_sha256=file_sha256(folder / WEIGHTS_NAME))


def remove_export(folder: Path) -> None:
    """Delete the export files of `folder` (before the weights beside them change)."""
    for name in (RECORD_NAME, *EXPORT_FILES):
        (folder / name).unlink(missing_ok=True)

