"""The files of a weights folder, by name, and their digests: what the registry, the export check and
push agree on without importing torch (recolor.nn.pretrained, which writes them, uses the same names).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
