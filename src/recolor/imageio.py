"""Reading and writing the image files people keep in photo archives.

`read_image` turns a JPEG, PNG, TIFF, WebP, BMP or GIF (first frame) into a `Photo`: sRGB pixels
with the EXIF orientation applied and the alpha channel set aside, plus what `write_image` needs to
write a result back like its source (ICC profile, EXIF, dpi, alpha, bit depth). Only Pillow is used.

What Pillow (checked with 13.0) cannot do, and what this module does about it:

- Pillow has no 16-bit RGB image mode. 16-bit-per-channel RGB, RGBA and gray+alpha PNG and TIFF
  files are decoded to 8 bits per channel (Pillow keeps the high byte), so such a `Photo` holds
  uint8 pixels and `bit_depth` 8: `bit_depth` always describes `rgb`, not the file. 16-bit
  grayscale (mode I;16, PNG and TIFF) is read at its full 16 bits.
- For the same reason no 16-bit RGB file can be written: uint16 pixels (and float pixels when
  `like.bit_depth` is 16) are rounded to 8 bits in every format.
- Pillow's libtiff compressors cannot write EXIF sub-IFDs (Exif, GPS); a TIFF whose EXIF has them is
  written uncompressed, any other TIFF with Deflate.
- BMP is written without alpha (Pillow writes 32-bit BMP but reads it back as RGB) and without an
  ICC profile or EXIF, which Pillow's BMP writer does not support. JPEG drops alpha.
- 32-bit float images (mode F) are refused; 32-bit integer gray (mode I) is clipped to 16 bits.
- Pillow's own decompression-bomb check (`PIL.Image.MAX_IMAGE_PIXELS`) still runs inside the TIFF
  and GIF decoders, so for those two formats `max_pixels` above `DEFAULT_MAX_PIXELS` only helps if
  the process also raises Pillow's limit.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
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
    `rgb`. `exif` carries Orientation = 1, since the orientation is applied to `rgb`.
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
    with _open_file(path) as fp:
        im = _identify(fp, path)
        width, height = im.size
        if width * height > max_pixels:
            raise ImageReadError(
                f"{path}: has {width} x {height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,}",
                "pass a larger max_pixels if you trust it",
            )
        orientation = _header_orientation(im)
        _decode(im, path)
        return _to_photo(im, path, orientation)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the file's header alone (no pixel decoding)."""
    path = Path(path)
    with _open_file(path) as fp:
        im = _identify(fp, path)
        width, height = im.size
        if _header_orientation(im) in (5, 6, 7, 8) and not _pillow_turned_it(im):
            return height, width
        return width, height


def _header_orientation(im: ImageFile.ImageFile) -> int:
    """The EXIF orientation known after opening, without decoding pixels.

    `im.getexif()` would do for most formats, but for PNG it decodes the whole image first (to find
    an eXIf chunk placed after the pixels).
    """
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(_ORIENTATION, 1)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        return im.tag_v2.get(_ORIENTATION, 1)
    return 1


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


# ------------------------------------------------------------------------------------------- EXIF


def _exif_for_output(im: Image.Image) -> bytes | None:
    """The source's EXIF as bytes (starting with b"Exif\\0\\0"), Orientation set to 1."""
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
        return b"Exif\x00\x00" + _reset_orientation(tiff)
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
    profile embedded. `quality` (1-100) applies to JPEG and WebP. Everything is written at 8 bits
    per channel (see the module docstring). GIF is not offered: callers write PNG instead.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    pixels = _to_uint8(rgb, path)
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

    try:
        atomic_write(path, save)
    except OSError as e:
        raise ImageWriteError(
            f"{path}: cannot be written: {e.strerror or e}",
            "check that the folder exists, is writable and has free space",
        ) from e
    return path


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
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
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


def _like_source(image: Image.Image, like: Photo, fmt: str, path: Path,
                 options: dict[str, object]) -> Image.Image:
    """Give `image` the profile, alpha and metadata of `like`, filling save `options`."""
    if like.alpha is not None and like.alpha.shape != (image.height, image.width):
        raise ImageWriteError(
            f"{path}: the image is {image.width} x {image.height} but the alpha of its source "
            f"{like.path} is {like.alpha.shape[1]} x {like.alpha.shape[0]}",
            "write at the size of the source",
        )
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
