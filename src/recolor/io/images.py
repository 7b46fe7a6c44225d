"""Reading and writing the image files people keep in photo archives.

`read_image` turns a JPEG, PNG, TIFF, WebP, BMP or GIF (first frame) into a `Photo`: sRGB pixels
with the EXIF orientation applied and the alpha channel set aside, plus what `write_image` needs to
write a result back like its source (ICC profile, EXIF, dpi, alpha, bit depth). Pillow does the
work, except for 16-bit color, which Pillow (checked with 13.0) has no image mode for: tifffile
reads and writes 16-bit RGB(A) TIFF, pypng reads 16-bit RGB(A) and gray+alpha PNG and writes
16-bit RGB(A) PNG. Pillow still opens those files first (format, size, ICC, dpi, EXIF).

What remains out of reach, and what this module does about it:

- Color management of 16-bit RGB: Pillow's littlecms binding transforms 8-bit RGB only. A 16-bit
  RGB source whose ICC profile is sRGB in all but name (converting to sRGB moves no 8-bit value by
  more than one level) keeps its 16 bits; one with any other RGB profile is converted to sRGB in
  8 bits, so its `Photo` holds uint8 pixels and `bit_depth` 8 (`bit_depth` always describes
  `rgb`, not the file). Likewise 16-bit output cannot be converted into a non-sRGB RGB profile: it
  is written in sRGB with an sRGB profile embedded (exact, like the 8-bit outputs after gray or
  CMYK profiles). 16-bit gray (I;16, gray+alpha) goes through a gray profile at full depth.
- Without the optional imagecodecs package tifffile decodes only uncompressed, Deflate, LZMA and
  PackBits TIFFs; a 16-bit RGB TIFF compressed otherwise (LZW, JPEG, Zstandard before Python
  3.14) is read by Pillow at 8 bits (Pillow keeps the high byte), with a warning. 16-bit
  gray+alpha TIFFs are refused: Pillow cannot open them.
- 16-bit output is written only to PNG and TIFF (JPEG, WebP and BMP hold 8 bits), as RGB or RGBA
  whatever the source's layout. pypng is pure Python: a 16-bit PNG takes on the order of a second
  per megapixel to write or to read (more when its writer used adaptive filters, as most do),
  several times slower than Pillow at 8 bits. A 16-bit TIFF keeps the descriptive EXIF tags of IFD0
  (ImageDescription, Make, Model, Software, DateTime, Artist, Copyright) but not the Exif and GPS
  sub-IFDs (DateTimeOriginal, exposure, position), which tifffile cannot write; a 16-bit PNG keeps
  the whole EXIF block in its eXIf chunk.
- Pillow's libtiff compressors cannot write EXIF sub-IFDs (Exif, GPS); an 8-bit TIFF whose EXIF
  has them is written uncompressed, any other TIFF with Deflate.
- BMP is written without alpha (Pillow writes 32-bit BMP but reads it back as RGB) and without an
  ICC profile or EXIF, which Pillow's BMP writer does not support. JPEG drops alpha.
- 32-bit float images (mode F) are refused; 32-bit integer gray (mode I) is clipped to 16 bits.
- Pillow's own decompression-bomb check (`PIL.Image.MAX_IMAGE_PIXELS`) still runs inside its TIFF
  and GIF decoders (not in tifffile's), so for those two formats `max_pixels` above
  `DEFAULT_MAX_PIXELS` only helps if the process also raises Pillow's limit. Its warning, below
  that limit, is silenced while reading: `max_pixels` has been checked already.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png  # pypng
import tifffile
from PIL import (
    BmpImagePlugin,
    ExifTags,
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

from recolor.errors import ImageReadError, ImageWriteError

log = logging.getLogger(__name__)

# Pillow refuses to open an image over 2 * Image.MAX_IMAGE_PIXELS (= 178,956,970 as shipped, about
# 13,400 x 13,400) as a possible decompression bomb. read_image accepts exactly what Pillow would:
# at that size the uint16 (H, W, 3) array of a 16-bit scan alone takes 1 GiB.
DEFAULT_MAX_PIXELS = 178_956_970

# Importing the plugins registers them; naming them keeps the set of formats we open explicit.
_PLUGINS = (JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin, BmpImagePlugin,
            GifImagePlugin)
_READ_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")

_SUFFIX_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
    ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_FORMATS)
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}

_ORIENTATION = ExifTags.Base.Orientation
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
# Descriptive IFD0 tags worth carrying from a TIFF (whose IFD0 also holds the layout of its pixels,
# which must not be copied into another file).
_DESCRIPTIVE_TAGS = (
    ExifTags.Base.ImageDescription, ExifTags.Base.Make, ExifTags.Base.Model,
    ExifTags.Base.Software, ExifTags.Base.DateTime, ExifTags.Base.Artist,
    ExifTags.Base.Copyright,
)
_SUB_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
_INTENT = ImageCms.Intent.PERCEPTUAL


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
        orientation = _header_orientation(im)
        photo = _read_sixteen_bit_color(im, fp, path, orientation)
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
        if _header_orientation(im) in (5, 6, 7, 8) and not _pillow_turned_it(im):
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


def _header_orientation(im: ImageFile.ImageFile) -> int:
    """The EXIF orientation known after opening, without decoding pixels.

    `im.getexif()` would do for most formats, but for PNG it decodes the whole image first (to find
    an eXIf chunk placed after the pixels).
    """
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return _orientation_in(raw)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        return im.tag_v2.get(_ORIENTATION, 1)
    return 1


def _orientation_in(raw_exif: bytes) -> int:
    exif = Image.Exif()
    exif.load(raw_exif)  # with or without the b"Exif\0\0" prefix
    return exif.get(_ORIENTATION, 1)


def _pillow_turned_it(im: ImageFile.ImageFile) -> bool:
    """Whether Pillow's TIFF plugin (which turns the image while loading) already reports the
    turned size: its width is then the stored height."""
    if not isinstance(im, TiffImagePlugin.TiffImageFile):
        return False
    stored = (im.tag_v2.get(256), im.tag_v2.get(257))  # ImageWidth, ImageLength
    return im.size == (stored[1], stored[0]) != stored


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
    source_mode = im.mode
    icc = im.info.get("icc_profile") or None
    exif = _exif_for_output(im)
    dpi = _dpi(im)

    image: Image.Image = im
    # Pillow's TIFF loader applies the orientation itself and deletes the tag: only turn the image
    # when the tag is still there after loading.
    if im.getexif().get(_ORIENTATION, 1) in range(2, 9):
        image = ImageOps.exif_transpose(im)
    if orientation in (5, 6, 7, 8) and dpi is not None:
        dpi = (dpi[1], dpi[0])

    image, alpha = _split_alpha(_normalise_mode(image, path))
    profile = _parse_profile(icc, path) if icc else None
    if icc and profile is None:
        icc = None
    if image.mode == "CMYK" and not _matches(profile, image.mode):
        image = image.convert("RGB")  # Pillow's naive conversion: no profile to do better with
    elif icc and profile is not None:
        image = _profile_to_srgb(image, icc, profile, path)

    if image.mode == "I;16":
        gray = np.asarray(image).astype(np.uint16)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif image.mode == "L":
        rgb = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
    else:
        rgb = np.array(image.convert("RGB") if image.mode != "RGB" else image)
    bit_depth = 16 if rgb.dtype == np.uint16 else 8
    is_grayscale = source_mode in _GRAY_MODES or _looks_gray(rgb)
    return Photo(
        path=path, rgb=rgb, alpha=alpha, format=source_format, mode=source_mode,
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
        transform = ImageCms.buildTransform(lab, _srgb_profile(), "LAB", "RGB", _INTENT)
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


def _looks_gray(rgb: np.ndarray) -> bool:
    """True when R, G and B differ by at most one 8-bit level everywhere."""
    tolerance = 257 if rgb.dtype == np.uint16 else 1
    rows = max(1, (1 << 22) // max(1, rgb.shape[1]))  # blocks of about 4 M pixels bound the memory
    for start in range(0, rgb.shape[0], rows):
        block = rgb[start:start + rows].astype(np.int32)
        if (np.abs(block[..., 0] - block[..., 1]).max(initial=0) > tolerance
                or np.abs(block[..., 1] - block[..., 2]).max(initial=0) > tolerance):
            return False
    return True


def _dpi(im: Image.Image) -> tuple[float, float] | None:
    dpi = im.info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    x, y = float(dpi[0]), float(dpi[1])
    # Pillow reports (1, 1) for a TIFF without resolution tags; no real scan has 1 dpi.
    return (x, y) if x > 1 and y > 1 else None


# ----------------------------------------------------------------------------- 16-bit color input


def _read_sixteen_bit_color(
    im: ImageFile.ImageFile, fp: BinaryIO, path: Path, orientation: int
) -> Photo | None:
    """A `Photo` at full depth for the 16-bit color PNGs and TIFFs that Pillow would cut to 8
    bits; None for every other file (and for TIFFs tifffile cannot decode), which Pillow reads."""
    if isinstance(im, PngImagePlugin.PngImageFile) and _png_is_sixteen_bit_color(fp):
        color, alpha = _read_png16(fp, path)
        raw_exif = _png_exif(im, fp, path)
        exif = _exif_block(raw_exif) if raw_exif else None
        orientation = _orientation_in(raw_exif) if raw_exif else 1
    elif isinstance(im, TiffImagePlugin.TiffImageFile) and _tiff_is_sixteen_bit_rgb(im):
        pixels = _read_tiff16(fp, path)
        if pixels is None:
            return None
        color, alpha = pixels
        exif = _exif_for_output(im)  # reads IFD0 from the file; decodes no pixels
    else:
        return None
    return _sixteen_bit_photo(im, path, color, alpha, orientation=orientation, exif=exif)


def _png_is_sixteen_bit_color(fp: BinaryIO) -> bool:
    # IHDR is always the first chunk: its bit depth is byte 24 of the file, its color type byte 25
    # (2 RGB, 4 gray + alpha, 6 RGBA). 16-bit gray without alpha (type 0) is Pillow's I;16.
    fp.seek(24)
    header = fp.read(2)
    return len(header) == 2 and header[0] == 16 and header[1] in (2, 4, 6)


def _read_png16(fp: BinaryIO, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(color, alpha) as uint16: color (H, W, 3), or (H, W) for gray + alpha."""
    fp.seek(0)
    rows_read = 0
    try:
        width, height, rows, info = png.Reader(file=fp).read()
        planes = info["planes"]
        pixels = np.empty((height, width * planes), np.uint16)
        for rows_read, row in enumerate(rows, start=1):
            pixels[rows_read - 1] = row  # array("H") in native byte order
    except (png.Error, zlib.error, EOFError, ValueError, struct.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt: {e}") from e
    if rows_read != height:
        raise ImageReadError(f"{path}: truncated or corrupt: {rows_read} of {height} rows")
    pixels = pixels.reshape(height, width, planes)
    if planes == 2:
        return pixels[..., 0], pixels[..., 1]
    if planes == 4:
        return pixels[..., :3], pixels[..., 3]
    return pixels, None


def _png_exif(im: ImageFile.ImageFile, fp: BinaryIO, path: Path) -> bytes | None:
    """The content of the eXIf chunk: Pillow has it when the chunk comes before the pixels, as it
    should; older writers put it after them, where only a scan of the chunks finds it."""
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw
    fp.seek(0)
    try:
        for kind, data in png.Reader(file=fp).chunks():
            if kind == b"eXIf":
                return data
    except (png.Error, EOFError, struct.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt: {e}") from e
    return None


def _tiff_is_sixteen_bit_rgb(im: TiffImagePlugin.TiffImageFile) -> bool:
    def as_tuple(value: object) -> tuple:
        return value if isinstance(value, tuple) else (value,)

    tags = im.tag_v2
    bits = as_tuple(tags.get(258, 1))  # BitsPerSample
    sample_format = as_tuple(tags.get(339, 1))  # SampleFormat: 1 = unsigned integer
    photometric = tags.get(262)  # 2 = RGB
    return photometric == 2 and len(bits) in (3, 4) and set(bits) == {16} \
        and set(sample_format) == {1}


def _tifffile_decodes(compression: int) -> bool:
    """Whether tifffile can decode this TIFF compression without the imagecodecs package."""
    return compression in tifffile.TIFF.DECOMPRESSORS


def _read_tiff16(fp: BinaryIO, path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(color (H, W, 3), alpha (H, W) or None) as uint16 from the first page; None when tifffile
    lacks the codec, so that Pillow reads the file at 8 bits rather than not at all."""
    fp.seek(0)
    try:
        with tifffile.TiffFile(fp) as tif:
            page = tif.pages[0]
            compression = page.compression
            if not _tifffile_decodes(compression):
                pixels = None
            else:
                pixels = page.asarray()
                planar = page.axes.startswith("S")  # SYX (separate planes) rather than YXS
                extra = page.extrasamples[0] if page.extrasamples else 0
    except ImportError:  # a codec tifffile lists but whose module this Python lacks (zstd)
        pixels = None
    except (tifffile.TiffFileError, ValueError, KeyError, IndexError, OSError, EOFError,
            struct.error, zlib.error) as e:
        raise ImageReadError(f"{path}: truncated or corrupt: {e}") from e
    if pixels is None:
        log.warning("%s: reading its 16-bit RGB at 8 bits: tifffile needs the imagecodecs package "
                    "for %s compression", path, getattr(compression, "name", compression))
        return None
    if planar:
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype.kind != "u" \
            or pixels.dtype.itemsize != 2:
        raise ImageReadError(f"{path}: unexpected 16-bit RGB layout {pixels.shape} {pixels.dtype}")
    pixels = pixels.astype(np.uint16, copy=False)  # native byte order
    color = pixels[..., :3]
    if pixels.shape[2] == 3 or extra not in (1, 2):  # a fourth sample of unspecified meaning
        return color, None
    alpha = pixels[..., 3]
    if extra == 1:  # associated (premultiplied) alpha, as Pillow undoes it for 8-bit RGBa
        color = _unpremultiply(color, alpha)
    return color, alpha


def _unpremultiply(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.uint64)[..., None]
    straight = (color.astype(np.uint64) * 65535 + a // 2) // np.maximum(a, 1)
    return np.where(a > 0, np.minimum(straight, 65535), 0).astype(np.uint16)


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W) or (H, W, C) array, as
    `ImageOps.exif_transpose` does to an image."""
    turned = {
        2: lambda a: a[:, ::-1],  # mirror left-right
        3: lambda a: a[::-1, ::-1],  # turn 180 degrees
        4: lambda a: a[::-1],  # mirror top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transpose
        6: lambda a: np.rot90(a, -1),  # turn 90 degrees clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transverse
        8: lambda a: np.rot90(a, 1),  # turn 90 degrees counterclockwise
    }.get(orientation)
    return pixels if turned is None else np.ascontiguousarray(turned(pixels))


def _sixteen_bit_photo(
    im: ImageFile.ImageFile, path: Path, color: np.ndarray, alpha: np.ndarray | None, *,
    orientation: int, exif: bytes | None,
) -> Photo:
    gray = color.ndim == 2
    color = _orient(color, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    dpi = _dpi(im)
    if orientation in (5, 6, 7, 8) and dpi is not None:
        dpi = (dpi[1], dpi[0])

    icc = im.info.get("icc_profile") or None
    profile = _parse_profile(icc, path) if icc else None
    if icc and profile is None:
        icc = None
    if gray:
        if profile is not None:  # into the sRGB-curve gray profile, at 16 bits
            image = _profile_to_srgb(Image.fromarray(np.ascontiguousarray(color)), icc, profile,
                                     path)
            color = np.asarray(image).astype(np.uint16)
        rgb = np.repeat(color[:, :, None], 3, axis=2)
    elif profile is not None:
        rgb = _sixteen_bit_rgb_to_srgb(color, icc, profile, path)
    else:
        rgb = np.ascontiguousarray(color)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha if rgb.dtype == np.uint16 else _uint16_to_uint8(alpha))
    mode = "LA" if gray else im.mode
    return Photo(
        path=path, rgb=rgb, alpha=alpha, format=im.format, mode=mode,
        bit_depth=16 if rgb.dtype == np.uint16 else 8, icc_profile=icc, exif=exif, dpi=dpi,
        is_grayscale=mode in _GRAY_MODES or _looks_gray(rgb),
    )


def _sixteen_bit_rgb_to_srgb(
    rgb: np.ndarray, icc: bytes, profile: ImageCms.ImageCmsProfile, path: Path
) -> np.ndarray:
    """16-bit RGB in sRGB: uint16 as they are when the profile is sRGB in all but name (or
    unusable), uint8 through Pillow's 8-bit transform otherwise."""
    if not _matches(profile, "RGB"):
        log.warning("%s: ignoring its %s ICC profile, which does not fit RGB pixels",
                    path, _color_space(profile))
        return np.ascontiguousarray(rgb)
    acts_like_srgb = _acts_like_srgb(icc)
    if acts_like_srgb is None:
        log.warning("%s: ignoring its ICC profile, which littlecms cannot use", path)
        return np.ascontiguousarray(rgb)
    if acts_like_srgb:
        return np.ascontiguousarray(rgb)
    log.warning("%s: reading its 16-bit RGB at 8 bits: Pillow converts from its ICC profile to "
                "sRGB in 8 bits only", path)
    image = Image.fromarray(_uint16_to_uint8(rgb))
    return np.asarray(ImageCms.applyTransform(image, _transform(icc, "RGB", "RGB", True)))


# ------------------------------------------------------------------------------------------- EXIF


def _exif_for_output(im: Image.Image) -> bytes | None:
    """The source's EXIF as bytes (starting with b"Exif\\0\\0"), Orientation set to 1."""
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return _exif_block(raw)
    # TIFF files (and PNGs with EXIF in a text chunk) have no EXIF block to copy: rebuild one from
    # the descriptive tags, leaving out those that describe the source's own pixel layout.
    source = im.getexif()
    exif = Image.Exif()
    for tag in _DESCRIPTIVE_TAGS:
        if tag in source:
            exif[tag] = source[tag]
    for tag in _SUB_IFDS:
        if tag in source and (ifd := source.get_ifd(tag)):
            exif[tag] = dict(ifd)
    if not len(exif):
        return None
    exif[_ORIENTATION] = 1
    return exif.tobytes()


def _exif_block(raw: bytes) -> bytes:
    """EXIF bytes (with or without the b"Exif\\0\\0" prefix) as b"Exif\\0\\0" + TIFF block,
    Orientation set to 1."""
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    return b"Exif\x00\x00" + _reset_orientation(tiff)


def _reset_orientation(tiff: bytes) -> bytes:
    """Set IFD0's Orientation to 1 in place, keeping every other byte (maker notes, thumbnail).

    Re-encoding through Pillow would move data that maker notes point to by absolute offset.
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return tiff
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return tiff
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == _ORIENTATION and kind == 3 and n == 1:  # one SHORT, stored in the entry itself
            patched = bytearray(tiff)
            struct.pack_into(order + "H", patched, entry + 8, 1)
            return bytes(patched)
    return tiff


def _has_sub_ifds(exif: bytes) -> bool:
    parsed = Image.Exif()
    parsed.load(exif)
    return any(tag in parsed for tag in _SUB_IFDS)


# -------------------------------------------------------------------------------------------- ICC


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=1)
def _srgb_icc_bytes() -> bytes:
    return _srgb_profile().tobytes()


@lru_cache(maxsize=1)
def _srgb_gray_profile() -> ImageCms.ImageCmsProfile:
    """A gray ICC profile with the sRGB tone curve and D50 white, which Pillow cannot create.

    Gray sources are converted into it rather than into RGB so that 16-bit gray stays 16-bit.
    """
    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in (x, y, z))

    # parametricCurveType 3 with the IEC 61966-2-1 constants: g, a, b, c, d
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    trc = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        struct.pack(">i", round(v * 65536)) for v in params)
    text = b"sRGB gray (recolor)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)
    tags = {b"desc": desc, b"wtpt": xyz(0.9642, 1.0, 0.8249), b"kTRC": trc}
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags.items():
        body += bytes(-(offset + len(body)) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000)
              + b"mntrGRAYXYZ " + bytes(12) + b"acsp" + bytes(28) + xyz(0.9642, 1.0, 0.8249)[8:])
    header += bytes(128 - len(header))
    data = header + struct.pack(">I", len(tags)) + table + body
    return ImageCms.ImageCmsProfile(io.BytesIO(data))


@lru_cache(maxsize=8)
def _acts_like_srgb(icc: bytes) -> bool | None:
    """Whether converting from this RGB profile to sRGB moves no 8-bit value by more than one
    level (a grid of 18^3 colors); None when littlecms cannot use the profile.

    Such a profile is sRGB under another name (or close enough), so 16-bit pixels need no
    conversion, which Pillow could only do in 8 bits.
    """
    try:
        transform = _transform(icc, "RGB", "RGB", True)
    except ImageCms.PyCMSError:
        return None
    levels = np.linspace(0, 255, 18).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 18, 3)
    converted = np.asarray(ImageCms.applyTransform(Image.fromarray(grid), transform))
    return int(np.abs(converted.astype(np.int16) - grid).max()) <= 1


@lru_cache(maxsize=8)
def _profile_from_bytes(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def _parse_profile(icc: bytes, path: Path) -> ImageCms.ImageCmsProfile | None:
    try:
        return _profile_from_bytes(icc)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        # A broken tag should not make the photo unreadable; untagged pixels count as sRGB.
        log.warning("%s: ignoring its embedded ICC profile, which cannot be parsed (%s)", path, e)
        return None


def _color_space(profile: ImageCms.ImageCmsProfile) -> str:
    return profile.profile.xcolor_space.strip()


def _matches(profile: ImageCms.ImageCmsProfile | None, mode: str) -> bool:
    if profile is None:
        return False
    wanted = {"L": "GRAY", "I;16": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}.get(mode)
    return _color_space(profile) == wanted


@lru_cache(maxsize=16)
def _transform(
    icc: bytes, in_mode: str, out_mode: str, to_srgb: bool
) -> ImageCms.ImageCmsTransform:
    profile = _profile_from_bytes(icc)
    target = _srgb_gray_profile() if out_mode in ("L", "I;16") else _srgb_profile()
    if to_srgb:
        return ImageCms.buildTransform(profile, target, in_mode, out_mode, _INTENT)
    return ImageCms.buildTransform(target, profile, in_mode, out_mode, _INTENT)


def _profile_to_srgb(
    image: Image.Image, icc: bytes, profile: ImageCms.ImageCmsProfile, path: Path
) -> Image.Image:
    if not _matches(profile, image.mode):
        log.warning("%s: ignoring its %s ICC profile, which does not fit pixel mode %s",
                    path, _color_space(profile), image.mode)
        return image
    out_mode = "RGB" if image.mode == "CMYK" else image.mode
    try:
        transform = _transform(icc, image.mode, out_mode, True)
    except ImageCms.PyCMSError as e:
        log.warning("%s: ignoring its ICC profile, which littlecms cannot use (%s)", path, e)
        return image
    return ImageCms.applyTransform(image, transform)


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
        save = _sixteen_bit_saver(_to_uint16(rgb, path), like, fmt, path)
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
        needs_raw = isinstance(exif, bytes) and _has_sub_ifds(exif)
        options["compression"] = None if needs_raw else "tiff_adobe_deflate"

    def save(fp: BinaryIO) -> None:
        image.save(fp, format=fmt, **options)

    return save


def _output_format(path: Path, format: str | None) -> str:
    if format is None:
        fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ImageWriteError(
                f"{path}: cannot tell the image format from the suffix {path.suffix!r}",
                f"use one of {', '.join(sorted(SUPPORTED_SUFFIXES))}",
            )
    else:
        fmt = _FORMAT_ALIASES.get(format.upper(), format.upper())
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
        return _uint16_to_uint8(rgb)
    if np.issubdtype(rgb.dtype, np.floating):
        if not np.isfinite(rgb).all():
            raise ImageWriteError(f"{path}: the pixels to write contain NaN or infinity")
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise TypeError(f"rgb must be uint8, uint16 or float, got {rgb.dtype}")


def _uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)


def _is_sixteen_bit(rgb: np.ndarray, like: Photo | None) -> bool:
    if rgb.dtype == np.uint16:
        return True
    return np.issubdtype(rgb.dtype, np.floating) and like is not None and like.bit_depth == 16


def _to_uint16(rgb: np.ndarray, path: Path) -> np.ndarray:
    if rgb.dtype == np.uint16:
        return np.ascontiguousarray(rgb)
    if not np.isfinite(rgb).all():
        raise ImageWriteError(f"{path}: the pixels to write contain NaN or infinity")
    return (np.clip(rgb, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def _like_source(image: Image.Image, like: Photo, fmt: str, path: Path,
                 options: dict[str, object]) -> Image.Image:
    """Give `image` the profile, alpha and metadata of `like`, filling save `options`."""
    if fmt != "BMP":
        if like.icc_profile:
            image, options["icc_profile"] = _srgb_to_profile(image, like.icc_profile, path)
        if like.exif:
            options["exif"] = like.exif
    if like.dpi and fmt != "WEBP":
        options["dpi"] = like.dpi
    if like.alpha is not None and fmt in ("PNG", "TIFF", "WEBP"):
        alpha = like.alpha if like.alpha.dtype == np.uint8 else _uint16_to_uint8(like.alpha)
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    return image


def _srgb_to_profile(image: Image.Image, icc: bytes, path: Path) -> tuple[Image.Image, bytes]:
    """Convert sRGB `image` into the source's RGB profile; sRGB with its profile otherwise."""
    profile = _parse_profile(icc, path)
    if profile is None or _color_space(profile) != "RGB":
        return image, _srgb_icc_bytes()
    try:
        transform = _transform(icc, "RGB", "RGB", False)
    except ImageCms.PyCMSError as e:  # an input-only profile (no inverse): leave the pixels sRGB
        log.warning("%s: writing sRGB, the source's ICC profile cannot be written into (%s)",
                    path, e)
        return image, _srgb_icc_bytes()
    return ImageCms.applyTransform(image, transform), icc


def _sixteen_bit_saver(pixels: np.ndarray, like: Photo | None, fmt: str,
                      path: Path) -> Callable[[BinaryIO], None]:
    """A writer of (H, W, 3) uint16 `pixels` as 16-bit RGB or RGBA PNG (pypng) or TIFF
    (tifffile), with the alpha, ICC profile, EXIF and dpi of `like`."""
    alpha = icc = exif = dpi = None
    if like is not None:
        if like.alpha is not None:
            alpha = like.alpha if like.alpha.dtype == np.uint16 else \
                like.alpha.astype(np.uint16) * 257
        if like.icc_profile:
            icc = _sixteen_bit_output_profile(like.icc_profile, path)
        exif, dpi = like.exif, like.dpi
    save = _save_png16 if fmt == "PNG" else _save_tiff16
    return partial(save, pixels=pixels, alpha=alpha, icc=icc, exif=exif, dpi=dpi)


def _sixteen_bit_output_profile(icc: bytes, path: Path) -> bytes:
    """The source's RGB profile when it is sRGB in all but name (the pixels need no conversion);
    the sRGB profile otherwise, the pixels staying sRGB (Pillow converts only 8-bit RGB)."""
    profile = _parse_profile(icc, path)
    if profile is not None and _color_space(profile) == "RGB":
        if _acts_like_srgb(icc):
            return icc
        log.warning("%s: writing 16-bit sRGB with an sRGB profile: Pillow cannot convert 16-bit "
                    "pixels into the source's ICC profile", path)
    return _srgb_icc_bytes()


def _save_png16(fp: BinaryIO, *, pixels: np.ndarray, alpha: np.ndarray | None,
                icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None) -> None:
    height, width, _ = pixels.shape
    samples = pixels if alpha is None else np.dstack([pixels, alpha])
    options: dict[str, object] = {}
    if dpi is not None:  # pHYs holds pixels per metre
        options.update(x_pixels_per_unit=round(dpi[0] / 0.0254),
                       y_pixels_per_unit=round(dpi[1] / 0.0254), unit_is_meter=True)
    writer = png.Writer(width, height, greyscale=False, alpha=alpha is not None, bitdepth=16,
                        **options)
    encoded = io.BytesIO()
    writer.write(encoded, samples.reshape(height, -1))
    # pypng writes no iCCP or eXIf: add them to its chunk stream, right after IHDR (iCCP must come
    # before PLTE and IDAT, eXIf before IDAT).
    chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
    extra = []
    if icc:
        extra.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))  # name, method 0
    if exif:
        extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    chunks[1:1] = extra
    png.write_chunks(fp, chunks)


def _save_tiff16(fp: BinaryIO, *, pixels: np.ndarray, alpha: np.ndarray | None,
                 icc: bytes | None, exif: bytes | None,
                 dpi: tuple[float, float] | None) -> None:
    samples = pixels if alpha is None else np.dstack([pixels, alpha])
    # A name of its own: tifffile takes one from the stream, and os.fdopen's is the descriptor.
    handle = tifffile.FileHandle(fp, name="recolor-output.tif")
    tifffile.imwrite(
        handle, samples, photometric="rgb", planarconfig="contig",
        extrasamples=None if alpha is None else ("unassalpha",),
        # Deflate with horizontal differencing, which smooth 16-bit scans compress much better with
        compression="zlib", predictor=True,
        iccprofile=icc,  # tag 34675, InterColorProfile
        resolution=dpi, resolutionunit="INCH" if dpi is not None else None,
        metadata=None, software=False,  # no tifffile JSON description, no "tifffile.py" Software
        extratags=_tiff_descriptive_tags(exif),
    )


def _tiff_descriptive_tags(exif: bytes | None) -> list[tuple[int, str, int, bytes, bool]]:
    """The descriptive IFD0 tags of `exif` as tifffile extratags (ASCII strings, UTF-8 encoded as
    Pillow writes them). tifffile cannot write the Exif and GPS sub-IFDs."""
    if not exif:
        return []
    parsed = Image.Exif()
    parsed.load(exif)
    tags = []
    for tag in _DESCRIPTIVE_TAGS:
        value = parsed.get(tag)
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, bytes) and value.rstrip(b"\0"):
            tags.append((int(tag), "s", 0, value.rstrip(b"\0"), True))
    return tags


def atomic_write(path: str | os.PathLike[str], write_fn: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write_fn` so that readers see the old file or the whole new one.

    The data goes to a temporary file in the target's folder (so `os.replace` is a rename on one
    file system), is fsynced, then replaces the target. On any failure the temporary file is
    removed and the target is left as it was.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp
    # would leave the output readable by its owner only).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fp:
            write_fn(fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; Windows cannot open a folder this way)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems (network mounts) refuse fsync on a folder; the file's data is already
        # on disk, so the write has succeeded as far as it can be made to.
        pass
    finally:
        os.close(fd)
