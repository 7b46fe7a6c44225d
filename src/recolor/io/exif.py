"""EXIF: the orientation a file asks for (applied to the pixels, then reset to 1), and the EXIF block
an output carries (descriptive IFD0 tags, the Exif and GPS sub-IFDs where the format can hold them).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png  # pypng
from PIL import (
    ExifTags,
    Image,
    ImageFile,
    TiffImagePlugin,
)

from recolor.errors import ImageReadError

ORIENTATION_TAG = ExifTags.Base.Orientation
# Descriptive IFD0 tags worth carrying from a TIFF (whose IFD0 also holds the layout of its pixels,
# which must not be copied into another file).
_DESCRIPTIVE_TAGS = (
    ExifTags.Base.ImageDescription, ExifTags.Base.Make, ExifTags.Base.Model,
    ExifTags.Base.Software, ExifTags.Base.DateTime, ExifTags.Base.Artist,
    ExifTags.Base.Copyright,
)
_SUB_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)


def header_orientation(im: ImageFile.ImageFile) -> int:
    """The EXIF orientation known after opening, without decoding pixels.

    `im.getexif()` would do for most formats, but for PNG it decodes the whole image first (to find
    an eXIf chunk placed after the pixels).
    """
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return orientation_in(raw)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        return im.tag_v2.get(ORIENTATION_TAG, 1)
    return 1


def orientation_in(raw_exif: bytes) -> int:
    exif = Image.Exif()
    exif.load(raw_exif)  # with or without the b"Exif\0\0" prefix
    return exif.get(ORIENTATION_TAG, 1)


def pillow_turned_it(im: ImageFile.ImageFile) -> bool:
    """Whether Pillow's TIFF plugin (which turns the image while loading) already reports the
    turned size: its width is then the stored height."""
    if not isinstance(im, TiffImagePlugin.TiffImageFile):
        return False
    stored = (im.tag_v2.get(256), im.tag_v2.get(257))  # ImageWidth, ImageLength
    return im.size == (stored[1], stored[0]) != stored


def png_exif(im: ImageFile.ImageFile, fp: BinaryIO, path: Path) -> bytes | None:
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


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
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


# ------------------------------------------------------------------------------------------- EXIF


def exif_for_output(im: Image.Image) -> bytes | None:
    """The source's EXIF as bytes (starting with b"Exif\\0\\0"), Orientation set to 1."""
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return exif_block(raw)
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
    exif[ORIENTATION_TAG] = 1
    return exif.tobytes()


def exif_block(raw: bytes) -> bytes:
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
        if tag == ORIENTATION_TAG and kind == 3 and n == 1:  # one SHORT, stored in the entry itself
            patched = bytearray(tiff)
            struct.pack_into(order + "H", patched, entry + 8, 1)
            return bytes(patched)
    return tiff


def has_sub_ifds(exif: bytes) -> bool:
    parsed = Image.Exif()
    parsed.load(exif)
    return any(tag in parsed for tag in _SUB_IFDS)


def tiff_descriptive_tags(exif: bytes | None) -> list[tuple[int, str, int, bytes, bool]]:
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
