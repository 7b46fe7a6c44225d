"""`Photo`: one image as read from a file, sRGB pixels plus what is needed to write a result back like its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import (
    Image,
)

# Pillow refuses to open an image over 2 * Image.MAX_IMAGE_PIXELS (= 178,956,970 as shipped, about
# 13,400 x 13,400) as a possible decompression bomb. read_image accepts exactly what Pillow would:
# at that size the uint16 (H, W, 3) array of a 16-bit scan alone takes 1 GiB.
DEFAULT_MAX_PIXELS = 178_956_970

SUFFIX_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
    ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(SUFFIX_FORMATS)
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(eq=False)
class Photo:
    """One image as read from a file: sRGB pixels plus what is needed to write a result back.

    `rgb` is (H, W, 3), uint8 (0-255) or uint16 (0-65535), sRGB, with the EXIF orientation already
    applied; `alpha` is (H, W) of the same dtype, or None. `bit_depth` (8 or 16) is the depth of
    `rgb`: 16 for 16-bit gray (I;16) and for 16-bit RGB, RGBA and gray+alpha PNG and TIFF sources
    (unless a non-sRGB RGB profile had to be converted in 8 bits: see the module docstring).
    `mode` is the layout Pillow names for the source ("RGB" for 8- and 16-bit RGB alike, "LA" for
    gray+alpha). `exif` carries Orientation = 1, since the orientation is applied to `rgb`.
    """

    path: Path | None
    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    mode: str
    bit_depth: int
    icc_profile: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    is_grayscale: bool

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, after orientation."""
        return self.rgb.shape[1], self.rgb.shape[0]

    def rgb_float(self) -> np.ndarray:
        """`rgb` as float32 (H, W, 3) in [0, 1]."""
        scale = 65535.0 if self.rgb.dtype == np.uint16 else 255.0
        return self.rgb.astype(np.float32) / np.float32(scale)


def looks_gray(rgb: np.ndarray) -> bool:
    """True when R, G and B differ by at most one 8-bit level everywhere."""
    tolerance = 257 if rgb.dtype == np.uint16 else 1
    rows = max(1, (1 << 22) // max(1, rgb.shape[1]))  # blocks of about 4 M pixels bound the memory
    for start in range(0, rgb.shape[0], rows):
        block = rgb[start:start + rows].astype(np.int32)
        if (np.abs(block[..., 0] - block[..., 1]).max(initial=0) > tolerance
                or np.abs(block[..., 1] - block[..., 2]).max(initial=0) > tolerance):
            return False
    return True


def pillow_dpi(im: Image.Image) -> tuple[float, float] | None:
    dpi = im.info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    x, y = float(dpi[0]), float(dpi[1])
    # Pillow reports (1, 1) for a TIFF without resolution tags; no real scan has 1 dpi.
    return (x, y) if x > 1 and y > 1 else None
