"""Writing a result like its source: format from the suffix, 8 or 16 bits, alpha, ICC profile, EXIF
and dpi carried over, through `recolor.io.atomic`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import (
    Image,
)

from recolor.errors import ImageWriteError
from recolor.io.atomic import atomic_write
from recolor.io.exif import has_sub_ifds
from recolor.io.photo import FORMAT_ALIASES, SUFFIX_FORMATS, SUPPORTED_SUFFIXES, Photo
from recolor.io.profiles import srgb_to_profile
from recolor.io.sixteen_bit import sixteen_bit_saver, to_uint16, uint16_to_uint8

# ---------------------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    like: Photo | None = None,
    format: str | None = None,
    quality: int = 95,
) -> Path:
    """Write sRGB pixels atomically, in `format` or the one the suffix names.

    `rgb` is (H, W, 3): uint8, uint16, or float in [0, 1]. With `like` (the Photo the result was
    made from) the file gets its alpha, EXIF (Orientation 1), dpi and color profile: an RGB profile
    is converted into and embedded; after a gray or CMYK profile the file is sRGB with an sRGB
    profile embedded. `quality` (1-100) applies to JPEG and WebP. PNG and TIFF are written at 16
    bits per channel when `rgb` is uint16, or float with `like.bit_depth` 16; everything else at 8
    (see the module docstring for what 16-bit output keeps). GIF is not offered: callers write PNG
    instead.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
    if like is not None and like.alpha is not None and like.alpha.shape != rgb.shape[:2]:
        raise ImageWriteError(
            f"{path}: the image is {rgb.shape[1]} x {rgb.shape[0]} but the alpha of its source "
            f"{like.path} is {like.alpha.shape[1]} x {like.alpha.shape[0]}",
            "write at the size of the source",
        )
    if fmt in ("PNG", "TIFF") and _is_sixteen_bit(rgb, like):
        save = sixteen_bit_saver(to_uint16(rgb, path), like, fmt, path)
    else:
        save = _pillow_saver(_to_uint8(rgb, path), like, fmt, path, quality=quality)
    try:
        atomic_write(path, save)
    except OSError as e:
        raise ImageWriteError(
            f"{path}: cannot be written: {e.strerror or e}",
            "check that the folder exists, is writable and has free space",
        ) from e
    return path


def _pillow_saver(pixels: np.ndarray, like: Photo | None, fmt: str, path: Path, *,
                  quality: int) -> Callable[[BinaryIO], None]:
    image = Image.fromarray(pixels)
    options: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "WEBP":
        options["exact"] = True  # keep the colors under transparent pixels, as other formats do
    if fmt == "JPEG" and quality >= 90:
        options["subsampling"] = "4:4:4"  # high quality means full-resolution color too
    if like is not None:
        image = _like_source(image, like, fmt, path, options)
    if fmt == "TIFF":
        # Pillow's libtiff compressors fail on EXIF sub-IFDs; its own writer only does raw.
        exif = options.get("exif")
        needs_raw = isinstance(exif, bytes) and has_sub_ifds(exif)
        options["compression"] = None if needs_raw else "tiff_adobe_deflate"

    def save(fp: BinaryIO) -> None:
        image.save(fp, format=fmt, **options)

    return save


def _output_format(path: Path, format: str | None) -> str:
    if format is None:
        fmt = SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ImageWriteError(
                f"{path}: cannot tell the image format from the suffix {path.suffix!r}",
                f"use one of {', '.join(sorted(SUPPORTED_SUFFIXES))}",
            )
    else:
        fmt = FORMAT_ALIASES.get(format.upper(), format.upper())
    if fmt == "GIF":
        raise ImageWriteError(f"{path}: GIF output is not offered (256 colors)",
                              "write PNG instead")
    if fmt not in ("JPEG", "PNG", "TIFF", "WEBP", "BMP"):
        raise ImageWriteError(f"{path}: cannot write format {format!r}",
                              "use JPEG, PNG, TIFF, WEBP or BMP")
    return fmt


def _to_uint8(rgb: np.ndarray, path: Path) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    if rgb.dtype == np.uint16:
        return uint16_to_uint8(rgb)
    if np.issubdtype(rgb.dtype, np.floating):
        if not np.isfinite(rgb).all():
            raise ImageWriteError(f"{path}: the pixels to write contain NaN or infinity")
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise TypeError(f"rgb must be uint8, uint16 or float, got {rgb.dtype}")


def _is_sixteen_bit(rgb: np.ndarray, like: Photo | None) -> bool:
    if rgb.dtype == np.uint16:
        return True
    return np.issubdtype(rgb.dtype, np.floating) and like is not None and like.bit_depth == 16


def _like_source(image: Image.Image, like: Photo, fmt: str, path: Path,
                 options: dict[str, object]) -> Image.Image:
    """Give `image` the profile, alpha and metadata of `like`, filling save `options`."""
    if fmt != "BMP":
        if like.icc_profile:
            image, options["icc_profile"] = srgb_to_profile(image, like.icc_profile, path)
        if like.exif:
            options["exif"] = like.exif
    if like.dpi and fmt != "WEBP":
        options["dpi"] = like.dpi
    if like.alpha is not None and fmt in ("PNG", "TIFF", "WEBP"):
        alpha = like.alpha if like.alpha.dtype == np.uint8 else uint16_to_uint8(like.alpha)
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    return image
