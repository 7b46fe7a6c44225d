"""16-bit colour, which Pillow has no image mode for: tifffile reads and writes 16-bit RGB(A) TIFF,
pypng reads 16-bit RGB(A) and gray+alpha PNG and writes 16-bit RGB(A) PNG.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png  # pypng
import tifffile
from PIL import (
    Image,
    ImageCms,
    ImageFile,
    PngImagePlugin,
    TiffImagePlugin,
)

from recolor.errors import ImageReadError, ImageWriteError
from recolor.io.exif import exif_block, exif_for_output, orient, orientation_in, png_exif, tiff_descriptive_tags
from recolor.io.photo import GRAY_MODES, Photo, looks_gray, pillow_dpi
from recolor.io.profiles import (
    acts_like_srgb,
    color_space,
    parse_profile,
    profile_matches,
    profile_to_srgb,
    profile_transform,
    srgb_icc_bytes,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- 16-bit color input


def read_sixteen_bit_color(
    im: ImageFile.ImageFile, fp: BinaryIO, path: Path, orientation: int
) -> Photo | None:
    """A `Photo` at full depth for the 16-bit color PNGs and TIFFs that Pillow would cut to 8
    bits; None for every other file (and for TIFFs tifffile cannot decode), which Pillow reads."""
    if isinstance(im, PngImagePlugin.PngImageFile) and _png_is_sixteen_bit_color(fp):
        color, alpha = _read_png16(fp, path)
        raw_exif = png_exif(im, fp, path)
        exif = exif_block(raw_exif) if raw_exif else None
        orientation = orientation_in(raw_exif) if raw_exif else 1
    elif isinstance(im, TiffImagePlugin.TiffImageFile) and _tiff_is_sixteen_bit_rgb(im):
        pixels = _read_tiff16(fp, path)
        if pixels is None:
            return None
        color, alpha = pixels
        exif = exif_for_output(im)  # reads IFD0 from the file; decodes no pixels
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


def _sixteen_bit_photo(
    im: ImageFile.ImageFile, path: Path, color: np.ndarray, alpha: np.ndarray | None, *,
    orientation: int, exif: bytes | None,
) -> Photo:
    gray = color.ndim == 2
    color = orient(color, orientation)
    alpha = None if alpha is None else orient(alpha, orientation)
    dpi = pillow_dpi(im)
    if orientation in (5, 6, 7, 8) and dpi is not None:
        dpi = (dpi[1], dpi[0])

    icc = im.info.get("icc_profile") or None
    profile = parse_profile(icc, path) if icc else None
    if icc and profile is None:
        icc = None
    if gray:
        if profile is not None:  # into the sRGB-curve gray profile, at 16 bits
            image = profile_to_srgb(Image.fromarray(np.ascontiguousarray(color)), icc, profile,
                                     path)
            color = np.asarray(image).astype(np.uint16)
        rgb = np.repeat(color[:, :, None], 3, axis=2)
    elif profile is not None:
        rgb = _sixteen_bit_rgb_to_srgb(color, icc, profile, path)
    else:
        rgb = np.ascontiguousarray(color)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha if rgb.dtype == np.uint16 else uint16_to_uint8(alpha))
    mode = "LA" if gray else im.mode
    return Photo(
        path=path, rgb=rgb, alpha=alpha, format=im.format, mode=mode,
        bit_depth=16 if rgb.dtype == np.uint16 else 8, icc_profile=icc, exif=exif, dpi=dpi,
        is_grayscale=mode in GRAY_MODES or looks_gray(rgb),
    )


def _sixteen_bit_rgb_to_srgb(
    rgb: np.ndarray, icc: bytes, profile: ImageCms.ImageCmsProfile, path: Path
) -> np.ndarray:
    """16-bit RGB in sRGB: uint16 as they are when the profile is sRGB in all but name (or
    unusable), uint8 through Pillow's 8-bit transform otherwise."""
    if not profile_matches(profile, "RGB"):
        log.warning("%s: ignoring its %s ICC profile, which does not fit RGB pixels",
                    path, color_space(profile))
        return np.ascontiguousarray(rgb)
    srgb_in_all_but_name = acts_like_srgb(icc)
    if srgb_in_all_but_name is None:
        log.warning("%s: ignoring its ICC profile, which littlecms cannot use", path)
        return np.ascontiguousarray(rgb)
    if srgb_in_all_but_name:
        return np.ascontiguousarray(rgb)
    log.warning("%s: reading its 16-bit RGB at 8 bits: Pillow converts from its ICC profile to "
                "sRGB in 8 bits only", path)
    image = Image.fromarray(uint16_to_uint8(rgb))
    return np.asarray(ImageCms.applyTransform(image, profile_transform(icc, "RGB", "RGB", True)))


def uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)


def to_uint16(rgb: np.ndarray, path: Path) -> np.ndarray:
    if rgb.dtype == np.uint16:
        return np.ascontiguousarray(rgb)
    if not np.isfinite(rgb).all():
        raise ImageWriteError(f"{path}: the pixels to write contain NaN or infinity")
    return (np.clip(rgb, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def sixteen_bit_saver(pixels: np.ndarray, like: Photo | None, fmt: str,
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
    profile = parse_profile(icc, path)
    if profile is not None and color_space(profile) == "RGB":
        if acts_like_srgb(icc):
            return icc
        log.warning("%s: writing 16-bit sRGB with an sRGB profile: Pillow cannot convert 16-bit "
                    "pixels into the source's ICC profile", path)
    return srgb_icc_bytes()


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
        extratags=tiff_descriptive_tags(exif),
    )
