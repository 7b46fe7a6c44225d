"""Reading a photo archive's files into a `Photo`: format checks, decoding limits, modes, alpha, dpi.

Pillow opens every file first (format, size, ICC, dpi, EXIF); 16-bit color goes on to
`recolor.io.sixteen_bit`, profiles to `recolor.io.profiles`, the orientation to `recolor.io.exif`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageCms,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from recolor.errors import ImageReadError
from recolor.io.exif import ORIENTATION_TAG, exif_for_output, header_orientation, pillow_turned_it
from recolor.io.photo import DEFAULT_MAX_PIXELS, GRAY_MODES, SUPPORTED_SUFFIXES, Photo, looks_gray, pillow_dpi
from recolor.io.profiles import RENDERING_INTENT, parse_profile, profile_matches, profile_to_srgb, srgb_profile
from recolor.io.sixteen_bit import read_sixteen_bit_color

log = logging.getLogger(__name__)

# Importing the plugins registers them; naming them keeps the set of formats we open explicit.
_PLUGINS = (JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin, BmpImagePlugin,
            GifImagePlugin)
_READ_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")


# ---------------------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Read an image file into a `Photo`; any unreadable file raises `ImageReadError`.

    `max_pixels` (width x height) guards against decompression bombs: small files that claim
    enormous dimensions.
    """
    path = Path(path)
    with _without_pillows_bomb_warning(), _open_file(path) as fp:
        im = _identify(fp, path)
        width, height = im.size
        if width * height > max_pixels:
            raise ImageReadError(
                f"{path}: has {width} x {height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,}",
                "pass a larger max_pixels if you trust it",
            )
        orientation = header_orientation(im)
        photo = read_sixteen_bit_color(im, fp, path, orientation)
        if photo is not None:
            return photo
        _decode(im, path)
        return _to_photo(im, path, orientation)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the file's header alone (no pixel decoding)."""
    path = Path(path)
    with _without_pillows_bomb_warning(), _open_file(path) as fp:
        im = _identify(fp, path)
        width, height = im.size
        if header_orientation(im) in (5, 6, 7, 8) and not pillow_turned_it(im):
            return height, width
        return width, height


@contextlib.contextmanager
def _without_pillows_bomb_warning() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning (issued between `Image.MAX_IMAGE_PIXELS` and
    twice that) while a file is opened and decoded: `max_pixels` has been checked already.

    A local filter rather than a global one, so that other code in the process still gets the
    warning; like any `warnings.catch_warnings`, it is not thread-safe.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open_file(path: Path) -> BinaryIO:
    try:
        fp = path.open("rb")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file", "check the path") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot be opened: {e.strerror or e}") from e
    if os.fstat(fp.fileno()).st_size == 0:
        fp.close()
        raise ImageReadError(f"{path}: empty file", "the file has no content; copy it again")
    return fp


def _identify(fp: BinaryIO, path: Path) -> ImageFile.ImageFile:
    """What `Image.open` does, limited to our formats and without its decompression-bomb check.

    Image.open compares the pixel count with the process-wide `Image.MAX_IMAGE_PIXELS`; the caller
    checks its own `max_pixels` instead, so one trusted file can be allowed without loosening the
    limit for everything else in the process.
    """
    prefix = fp.read(16)
    failure: Exception | None = None
    for name in _READ_FORMATS:
        factory, accept = Image.OPEN[name]
        if accept is not None and accept(prefix) is not True:
            continue
        fp.seek(0)
        try:
            return factory(fp, os.fspath(path))
        except Image.DecompressionBombError as e:  # GIF and MPO check frames as they open
            raise _over_pillows_limit(path, e) from e
        except (SyntaxError, IndexError, TypeError, ValueError, EOFError, struct.error,
                OSError) as e:  # what Image.open takes for "not this format"
            failure = failure or e
    if failure is not None:
        raise ImageReadError(f"{path}: truncated or corrupt: {failure}") from failure
    raise ImageReadError(
        f"{path}: not an image file Pillow can read",
        f"recolor reads {', '.join(sorted(SUPPORTED_SUFFIXES))}",
    )


def _decode(im: ImageFile.ImageFile, path: Path) -> None:
    # load() decodes every pixel now, so a truncated file fails here with its name rather than
    # later inside numpy; LOAD_TRUNCATED_IMAGES stays off.
    try:
        im.load()
    except Image.DecompressionBombError as e:  # TIFF and GIF check again as they decode
        raise _over_pillows_limit(path, e) from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt: {e}") from e


def _over_pillows_limit(path: Path, error: Image.DecompressionBombError) -> ImageReadError:
    return ImageReadError(
        f"{path}: {error}",
        "raise PIL.Image.MAX_IMAGE_PIXELS in this process if you trust the file",
    )


def _to_photo(im: ImageFile.ImageFile, path: Path, orientation: int) -> Photo:
    source_format = "JPEG" if im.format == "MPO" else im.format
    dpi = pillow_dpi(im)
    image: Image.Image = im
    # Pillow's TIFF loader applies the orientation itself and deletes the tag: only turn the image
    # when the tag is still there after loading.
    if im.getexif().get(ORIENTATION_TAG, 1) in range(2, 9):
        image = ImageOps.exif_transpose(im)
    if orientation in (5, 6, 7, 8) and dpi is not None:
        dpi = (dpi[1], dpi[0])
    return photo_from_image(image, path=path, format=source_format, mode=im.mode,
                            icc=im.info.get("icc_profile") or None, exif=exif_for_output(im), dpi=dpi)


def photo_from_image(image: Image.Image, *, path: Path | None = None, format: str = "PNG", mode: str | None = None,
                     icc: bytes | None = None, exif: bytes | None = None,
                     dpi: tuple[float, float] | None = None) -> Photo:
    """A Pillow image (any mode, as it stands: no EXIF orientation applied) -> a `Photo` in sRGB, as
    `read_image` makes one from a file: its ICC profile (`icc`) applied, alpha split off, gray
    kept as one channel repeated. `mode` is the source's (default: the image's own)."""
    source_mode = mode or image.mode
    label = path if path is not None else "the image"
    image, alpha = _split_alpha(_normalise_mode(image, label))
    profile = parse_profile(icc, label) if icc else None
    if icc and profile is None:
        icc = None
    if image.mode == "CMYK" and not profile_matches(profile, image.mode):
        image = image.convert("RGB")  # Pillow's naive conversion: no profile to do better with
    elif icc and profile is not None:
        image = profile_to_srgb(image, icc, profile, label)

    if image.mode == "I;16":
        gray = np.asarray(image).astype(np.uint16)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif image.mode == "L":
        rgb = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
    else:
        rgb = np.array(image.convert("RGB") if image.mode != "RGB" else image)
    bit_depth = 16 if rgb.dtype == np.uint16 else 8
    is_grayscale = source_mode in GRAY_MODES or looks_gray(rgb)
    return Photo(
        path=path, rgb=rgb, alpha=alpha, format=format, mode=source_mode,
        bit_depth=bit_depth, icc_profile=icc, exif=exif, dpi=dpi, is_grayscale=is_grayscale,
    )


def _normalise_mode(image: Image.Image, path: Path) -> Image.Image:
    """Bring any mode down to L, I;16, RGB or CMYK, each optionally with alpha (LA, RGBA)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    if mode.startswith("I;16"):
        # One byte order in native uint16: littlecms mishandles I;16B and numpy wants native.
        return Image.fromarray(np.asarray(image).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(np.clip(np.asarray(image), 0, 65535).astype(np.uint16))
    if mode == "1":
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "RGBa":
        return image.convert("RGBA")
    if mode == "LAB":
        lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        transform = ImageCms.buildTransform(lab, srgb_profile(), "LAB", "RGB", RENDERING_INTENT)
        return ImageCms.applyTransform(image, transform)
    if mode in ("RGBX", "YCbCr", "HSV"):
        return image.convert("RGB")
    raise ImageReadError(
        f"{path}: has pixel mode {mode}, which recolor does not read",
        "convert it to 8- or 16-bit RGB or grayscale",
    )


def _split_alpha(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    if image.mode not in ("LA", "RGBA"):
        return image, None
    alpha = np.array(image.getchannel("A"))
    return image.convert(image.mode[:-1]), alpha
