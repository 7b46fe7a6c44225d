"""The inference export that sits beside a weights folder's safetensors, as files: their names, the
record of what they were made from (export.json), and the check that they match it and the weights.

Making an export (torch and OpenVINO) is `recolor.engine.export`'s; this module only reads files, so
`recolor models verify` and the registry check exports without either.

    openvino_model.xml   the graph (input "lightness" (N, 1, H, W) = L/50 - 1, output "ab" tanh ab;
                         N, H and W free, H and W multiples of 32)
    openvino_model.bin   its weights, fp16
    export.json          the sha256 of model.safetensors it was made from and of the two files above,
                         and the versions that made it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recolor.errors import ModelError
from recolor.hub.files import WEIGHTS_NAME, file_sha256

GRAPH_NAME = "openvino_model.xml"
GRAPH_WEIGHTS_NAME = "openvino_model.bin"
RECORD_NAME = "export.json"
EXPORT_FILES = (GRAPH_NAME, GRAPH_WEIGHTS_NAME)
INPUT_NAME = "lightness"
OUTPUT_NAME = "ab"
FORMAT = "openvino-ir-fp16"
CACHE_FOLDER = "recolor-exports"


@dataclass(frozen=True)
class Export:
    """An export checked against its weights: the graph to load and where it lives."""

    graph: Path
    folder: Path
    weights_sha256: str
    made_now: bool = False


def read_record(folder: Path) -> dict[str, Any] | None:
    """export.json of `folder` (None when there is none); ModelError when it cannot be read."""
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path} cannot be read ({error})", remake_fix(folder)) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
        raise ModelError(f"{path} is not an export record of this recolor (format {record.get('format')!r})"
                         if isinstance(record, dict) else f"{path} is not an export record", remake_fix(folder))
    return record


def remake_fix(folder: Path) -> str:
    names = ", ".join((RECORD_NAME, *EXPORT_FILES))
    return f"delete {names} in {folder}: recolor makes the export again from model.safetensors"


def check_export(export_folder: Path, weights_sha256: str) -> Export:
    """The export in `export_folder`, checked: made from weights with `weights_sha256`, its files those
    export.json names. Raises ModelError naming the file that does not match."""
    record = read_record(export_folder)
    if record is None:
        stray = [name for name in EXPORT_FILES if (export_folder / name).exists()]
        raise ModelError(f"{export_folder / stray[0]} has no {RECORD_NAME} beside it" if stray
                         else f"{export_folder} holds no export", remake_fix(export_folder))
    if record.get("weights_sha256") != weights_sha256:
        raise ModelError(f"{export_folder / RECORD_NAME} was made from other weights than {WEIGHTS_NAME} "
                         f"(sha256 {str(record.get('weights_sha256'))[:12]}…, the weights' {weights_sha256[:12]}…)",
                         remake_fix(export_folder))
    for name in EXPORT_FILES:
        path = export_folder / name
        if not path.is_file():
            raise ModelError(f"{path} is missing (export.json names it)", remake_fix(export_folder))
        if file_sha256(path) != record["files"].get(name):
            raise ModelError(f"{path} does not match {RECORD_NAME} (damaged or replaced)", remake_fix(export_folder))
    return Export(graph=export_folder / GRAPH_NAME, folder=export_folder, weights_sha256=weights_sha256)


def cache_folder(weights_sha256: str) -> Path:
    """Where the export of weights that live in a folder not ours to write goes."""
    from huggingface_hub import constants  # only on this path: the Hub client is slow to import

    return Path(constants.HF_HUB_CACHE) / CACHE_FOLDER / weights_sha256
