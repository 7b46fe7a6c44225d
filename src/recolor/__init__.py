"""recolor: bring color to black-and-white photographs with U-Net GANs in CIE Lab.

From code: `recolor.load_model(name)` and its `.colorize(image)`, or `recolor.colorize(image)` once
(docs/api.md). They are imported when first used, so `import recolor` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The one place the version lives: pyproject.toml reads it from here, and
# `recolor --version` prints it without importing torch.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from recolor.api import Model, colorize, load_model

__all__ = ["Model", "colorize", "load_model", "__version__"]
_API = frozenset({"Model", "colorize", "load_model"})


def __getattr__(name: str) -> Any:
    # PEP 562: the API (numpy, OpenCV, the engine) loads on first use, not on `import recolor`.
    if name in _API:
        from recolor import api

        return getattr(api, name)
    raise AttributeError(f"module 'recolor' has no attribute {name!r}")
