"""Tests of recolor.io (read, 16 bit, profiles, EXIF, write, atomic): every file is built here, in tmp_path."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import png  # pypng
import pytest
import tifffile
from PIL import ExifTags, Image, ImageCms

from recolor.errors import ImageReadError, ImageWriteError
from recolor.io import sixteen_bit
from recolor.io.atomic import atomic_write
from recolor.io.photo import DEFAULT_MAX_PIXELS, SUPPORTED_SUFFIXES, Photo
from recolor.io.read import read_image, read_image_size
from recolor.io.write import write_image

W, H = 24, 16
ORIENTATION = ExifTags.Base.Orientation
MAKE = ExifTags.Base.Make


# ------------------------------------------------------------------------------ building files


def gradient_rgb(width: int = W, height: int = H) -> np.ndarray:
    """A smooth color image (JPEG reproduces it to within a few levels)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [40 + 180 * x / (width - 1), 30 + 190 * y / (height - 1), 200 - 150 * x / (width - 1)],
        axis=2,
    ).round().astype(np.uint8)


def gradient_gray(width: int = W, height: int = H) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return (20 + 100 * x / (width - 1) + 100 * y / (height - 1)).round().astype(np.uint8)


def make_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif[ExifTags.IFD.Exif] = {ExifTags.Base.DateTimeOriginal: "1950:06:01 12:00:00"}
    return exif


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def is_srgb_profile(icc: bytes) -> bool:
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
    return profile.xcolor_space.strip() == "RGB" and "sRGB" in profile.profile_description


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    data = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(data)) + data + bytes(8 + 3 + 67)


def icc_profile(space: bytes, tags: dict[bytes, bytes], *, cls: bytes = b"mntr",
                pcs: bytes = b"XYZ ") -> bytes:
    """A minimal ICC v2 profile: Pillow can only create sRGB, Lab and XYZ ones."""
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags.items():
        body += bytes(-(offset + len(body)) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000)
              + cls + space + pcs + bytes(12) + b"acsp" + bytes(28)
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249))
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


D50 = _xyz(0.9642, 1.0, 0.8249)
# sRGB's primaries adapted to D50, as ICC profiles store them
SRGB_RED = (0.4361, 0.2225, 0.0139)
SRGB_GREEN = (0.3851, 0.7169, 0.0971)
SRGB_BLUE = (0.1431, 0.0606, 0.7141)


def gamma22_to_srgb(value: int) -> float:
    linear = (value / 255) ** 2.2
    encoded = 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055
    return 255 * encoded


def swapped_rgb_icc() -> bytes:
    """An RGB profile whose first channel is sRGB's green primary and second sRGB's red."""
    return icc_profile(b"RGB ", {
        b"desc": _desc("red-green swapped"), b"wtpt": D50,
        b"rXYZ": _xyz(*SRGB_GREEN), b"gXYZ": _xyz(*SRGB_RED), b"bXYZ": _xyz(*SRGB_BLUE),
        b"rTRC": _curve(2.2), b"gTRC": _curve(2.2), b"bTRC": _curve(2.2),
    })


def linear_gray_icc() -> bytes:
    return icc_profile(b"GRAY", {b"desc": _desc("linear gray"), b"wtpt": D50, b"kTRC": _curve(1.0)})


def k_only_cmyk_icc() -> bytes:
    """A CMYK profile that ignores C, M and Y: lightness comes from K alone."""
    identity = bytes(range(256))
    clut = b""
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    # Lab encoded as L* * 255/100, a + 128, b + 128
                    clut += bytes([0 if k else 255, 128, 128])
    lut = (b"mft1\0\0\0\0" + bytes([4, 3, 2, 0])
           + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
           + identity * 4 + clut + identity * 3)
    return icc_profile(b"CMYK", {b"desc": _desc("K only"), b"wtpt": D50, b"A2B0": lut},
                       cls=b"prtr", pcs=b"Lab ")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def full_range16(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint16 samples over the whole range, 0 and 65535 included, whose low bytes vary
    independently of the high ones: no 8-bit path can reproduce them."""
    values = np.random.default_rng(seed).integers(0, 65536, shape).astype(np.uint16)
    values.reshape(-1)[:2] = (0, 65535)
    return values


def write_png16(path: Path, color: np.ndarray, *, alpha: np.ndarray | None = None,
                icc: bytes | None = None, exif: bytes | None = None,
                dpi: tuple[int, int] | None = None, exif_after_pixels: bool = False) -> None:
    """A 16-bit RGB(A) or gray+alpha PNG written by pypng, ICC and EXIF chunks added to its chunk
    stream (Pillow cannot write 16-bit color)."""
    height, width = color.shape[:2]
    samples = color if alpha is None else np.dstack([color, alpha])
    options = {}
    if dpi:
        options = dict(x_pixels_per_unit=round(dpi[0] / 0.0254),
                       y_pixels_per_unit=round(dpi[1] / 0.0254), unit_is_meter=True)
    buffer = io.BytesIO()
    png.Writer(width, height, greyscale=color.ndim == 2, alpha=alpha is not None, bitdepth=16,
               **options).write(buffer, samples.reshape(height, -1))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    if icc:
        chunks.insert(1, (b"iCCP", b"test\0\0" + zlib.compress(icc)))
    if exif:  # the chunk holds the TIFF block, without the b"Exif\0\0" of JPEG's APP1
        tiff = exif[6:] if exif.startswith(b"Exif\0\0") else exif
        chunks.insert(len(chunks) - 1 if exif_after_pixels else 1, (b"eXIf", tiff))
    with path.open("wb") as fp:
        png.write_chunks(fp, chunks)


def write_tiff16(path: Path, color: np.ndarray, *, alpha: np.ndarray | None = None,
                 associated: bool = False, planar: bool = False, **options) -> None:
    """A 16-bit RGB(A) TIFF written by tifffile (Pillow cannot write 16-bit color)."""
    samples = color if alpha is None else np.dstack([color, alpha])
    if planar:
        samples = np.moveaxis(samples, -1, 0)
    extrasamples = None if alpha is None else ("assocalpha" if associated else "unassalpha",)
    tifffile.imwrite(path, samples, photometric="rgb", extrasamples=extrasamples,
                     planarconfig="separate" if planar else "contig", metadata=None, **options)


def png16_header(path: Path) -> dict:
    return png.Reader(filename=str(path)).read()[3]


def tiff_sample_layout(path: Path) -> tuple[np.dtype, int]:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].dtype, tif.pages[0].samplesperpixel


# ---------------------------------------------------------------------- reading every kind of file

RGB = gradient_rgb()
GRAY = gradient_gray()
ALPHA = np.tile(np.linspace(0, 255, W).round().astype(np.uint8), (H, 1))
PALETTE = np.array([[0, 0, 0], [250, 20, 20], [20, 250, 20], [20, 20, 250]], dtype=np.uint8)
INDICES = (np.arange(W)[None, :] // 6 + np.arange(H)[:, None] // 8) % 4


def _palette_image(transparent: int | None = None) -> Image.Image:
    image = Image.fromarray(INDICES.astype(np.uint8), "P")
    image.putpalette(PALETTE.ravel().tolist())
    if transparent is not None:
        image.info["transparency"] = transparent
    return image


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[..., 0] = 255 - RGB[..., 0]
    cmyk[..., 1] = 255 - RGB[..., 1]
    cmyk[..., 2] = 255 - RGB[..., 2]
    return Image.fromarray(cmyk, "CMYK"), RGB, None  # Pillow's plain CMYK to RGB: 255 - C, ...


def _case(image: Image.Image, rgb: np.ndarray, alpha: np.ndarray | None = None):
    return image, rgb, alpha


GRAY3 = np.repeat(GRAY[..., None], 3, axis=2)
GRAY16 = (GRAY.astype(np.uint16) * 257 + 99).astype(np.uint16)
RGBA = np.dstack([RGB, ALPHA])
P_ALPHA = np.where(INDICES == 2, 0, 255).astype(np.uint8)

# name: (suffix, make (image, expected rgb, expected alpha), source mode, tolerance, metadata?)
# The sources are lossless except JPEG; write_image's WebP is lossy, hence WEBP_TOLERANCE.
WEBP_TOLERANCE = 16
CASES = {
    "jpeg-rgb": (".jpg", lambda: _case(Image.fromarray(RGB), RGB), "RGB", 8, True),
    "jpeg-l": (".jpg", lambda: _case(Image.fromarray(GRAY), GRAY3), "L", 4, True),
    "jpeg-cmyk": (".jpg", _cmyk, "CMYK", 8, False),
    "png-l": (".png", lambda: _case(Image.fromarray(GRAY), GRAY3), "L", 0, True),
    "png-la": (".png", lambda: _case(Image.fromarray(np.dstack([GRAY, ALPHA]), "LA"), GRAY3, ALPHA),
               "LA", 0, True),
    "png-p": (".png", lambda: _case(_palette_image(), PALETTE[INDICES]), "P", 0, True),
    "png-p-transparent": (".png", lambda: _case(_palette_image(2), PALETTE[INDICES], P_ALPHA),
                          "P", 0, True),
    "png-rgb": (".png", lambda: _case(Image.fromarray(RGB), RGB), "RGB", 0, True),
    "png-rgba": (".png", lambda: _case(Image.fromarray(RGBA, "RGBA"), RGB, ALPHA), "RGBA", 0, True),
    "png-i16": (".png", lambda: _case(Image.fromarray(GRAY16),
                                      np.repeat(GRAY16[..., None], 3, axis=2)), "I;16", 0, True),
    "tiff-rgb": (".tif", lambda: _case(Image.fromarray(RGB), RGB), "RGB", 0, True),
    "tiff-i16": (".tif", lambda: _case(Image.fromarray(GRAY16),
                                       np.repeat(GRAY16[..., None], 3, axis=2)), "I;16", 0, True),
    "webp-rgba": (".webp", lambda: _case(Image.fromarray(RGBA, "RGBA"), RGB, ALPHA),
                  "RGBA", 0, True),
    "bmp-rgb": (".bmp", lambda: _case(Image.fromarray(RGB), RGB), "RGB", 0, False),
    "gif-p": (".gif", lambda: _case(_palette_image(), PALETTE[INDICES]), "P", 0, False),
}


def _save_source(path: Path, image: Image.Image, with_metadata: bool) -> dict:
    options: dict = {}
    suffix = path.suffix
    if suffix == ".webp":
        options["lossless"] = True
        options["exact"] = True
    if suffix == ".jpg":
        options["quality"] = 95
        options["subsampling"] = "4:4:4"
    if with_metadata:
        options["exif"] = make_exif(orientation=1).tobytes()
        options["icc_profile"] = srgb_icc()
    if suffix in (".jpg", ".png", ".tif", ".bmp"):  # WebP and GIF hold no resolution
        options["dpi"] = (300, 200)
    image.save(path, **options)
    return options


@pytest.mark.parametrize("case", list(CASES))
def test_read_and_write_back_every_kind_of_file(tmp_path: Path, case: str) -> None:
    suffix, make, mode, tolerance, with_metadata = CASES[case]
    image, expected_rgb, expected_alpha = make()
    source = tmp_path / f"source{suffix}"
    options = _save_source(source, image, with_metadata)

    photo = read_image(source)
    assert photo.path == source
    assert photo.size == (W, H)
    assert photo.mode == mode
    assert photo.format == Image.registered_extensions()[suffix]
    assert photo.rgb.shape == (H, W, 3)
    sixteen = mode == "I;16"
    assert photo.rgb.dtype == (np.uint16 if sixteen else np.uint8)
    assert photo.bit_depth == (16 if sixteen else 8)
    assert photo.is_grayscale == (mode in ("L", "LA", "I;16"))
    error = np.abs(photo.rgb.astype(np.int32) - expected_rgb.astype(np.int32)).max()
    assert error <= tolerance, f"pixels off by {error}"
    if expected_alpha is None:
        assert photo.alpha is None
    else:
        np.testing.assert_array_equal(photo.alpha, expected_alpha)
    if with_metadata:
        assert photo.icc_profile == options["icc_profile"]
        exif = Image.Exif()
        exif.load(photo.exif)
        assert exif[MAKE] == "TestCam"
    if "dpi" in options:
        assert photo.dpi == pytest.approx((300, 200), abs=0.5)

    out_suffix = ".png" if suffix == ".gif" else suffix  # GIF output is not offered
    written = write_image(tmp_path / f"out{out_suffix}", photo.rgb, like=photo)
    assert written == tmp_path / f"out{out_suffix}"
    again = read_image(written)
    assert again.size == photo.size
    assert again.bit_depth == (16 if sixteen else 8)  # 16-bit gray comes back as 16-bit RGB
    write_tolerance = WEBP_TOLERANCE if suffix == ".webp" else tolerance
    error = np.abs(again.rgb.astype(np.int32) - photo.rgb.astype(np.int32)).max()
    assert error <= write_tolerance, f"written pixels off by {error}"
    if expected_alpha is not None:
        np.testing.assert_array_equal(again.alpha, expected_alpha)
    else:
        assert again.alpha is None
    if with_metadata:
        assert again.icc_profile == options["icc_profile"]
        exif = Image.Exif()
        exif.load(again.exif)
        assert exif[MAKE] == "TestCam"
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        if suffix == ".tif" and sixteen:  # tifffile writes no EXIF sub-IFD (module docstring)
            assert ExifTags.Base.DateTimeOriginal not in exif_ifd
        else:
            assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "1950:06:01 12:00:00"
    if "dpi" in options:
        assert again.dpi == pytest.approx((300, 200), abs=0.5)


def test_sixteen_bit_gray_keeps_every_level(tmp_path: Path) -> None:
    levels = np.arange(W * H, dtype=np.uint16).reshape(H, W) * 97 + 1  # low bytes matter
    Image.fromarray(levels).save(tmp_path / "scan.png")
    photo = read_image(tmp_path / "scan.png")
    assert photo.rgb.dtype == np.uint16 and photo.bit_depth == 16
    np.testing.assert_array_equal(photo.rgb[..., 1], levels)
    np.testing.assert_allclose(photo.rgb_float()[..., 0], levels / 65535, rtol=0, atol=1e-6)
    assert photo.rgb_float().dtype == np.float32


COLOR16 = full_range16((H, W, 3), seed=1)
ALPHA16 = full_range16((H, W), seed=2)
GRAY16_FULL = full_range16((H, W), seed=3)

# name: (suffix, write the source, expected rgb, expected alpha, mode)
SIXTEEN_BIT_SOURCES = {
    "png-rgb": (".png", lambda p: write_png16(p, COLOR16), COLOR16, None, "RGB"),
    "png-rgba": (".png", lambda p: write_png16(p, COLOR16, alpha=ALPHA16), COLOR16, ALPHA16,
                 "RGBA"),
    "png-la": (".png", lambda p: write_png16(p, GRAY16_FULL, alpha=ALPHA16),
               np.repeat(GRAY16_FULL[..., None], 3, axis=2), ALPHA16, "LA"),
    "tiff-rgb": (".tif", lambda p: write_tiff16(p, COLOR16, compression="zlib", predictor=True),
                 COLOR16, None, "RGB"),
    "tiff-rgba": (".tif", lambda p: write_tiff16(p, COLOR16, alpha=ALPHA16), COLOR16, ALPHA16,
                  "RGBA"),
    "tiff-planar": (".tif", lambda p: write_tiff16(p, COLOR16, planar=True), COLOR16, None, "RGB"),
    "tiff-big-endian": (".tif", lambda p: write_tiff16(p, COLOR16, byteorder=">"), COLOR16, None,
                        "RGB"),
}


@pytest.mark.parametrize("case", list(SIXTEEN_BIT_SOURCES))
def test_sixteen_bit_color_keeps_every_level_both_ways(tmp_path: Path, case: str) -> None:
    suffix, write_source, expected_rgb, expected_alpha, mode = SIXTEEN_BIT_SOURCES[case]
    source = tmp_path / f"source{suffix}"
    write_source(source)

    photo = read_image(source)
    assert photo.rgb.dtype == np.uint16 and photo.bit_depth == 16 and photo.mode == mode
    assert photo.is_grayscale == (mode == "LA")
    np.testing.assert_array_equal(photo.rgb, expected_rgb)
    if expected_alpha is None:
        assert photo.alpha is None
    else:
        assert photo.alpha.dtype == np.uint16
        np.testing.assert_array_equal(photo.alpha, expected_alpha)

    out = write_image(tmp_path / f"out{suffix}", photo.rgb, like=photo)
    samples = 3 if expected_alpha is None else 4  # written as RGB(A), whatever the source layout
    if suffix == ".png":
        header = png16_header(out)
        assert (header["bitdepth"], header["planes"]) == (16, samples)
    else:
        assert tiff_sample_layout(out) == (np.dtype(np.uint16), samples)
    again = read_image(out)
    assert again.bit_depth == 16
    np.testing.assert_array_equal(again.rgb, expected_rgb)
    if expected_alpha is not None:
        np.testing.assert_array_equal(again.alpha, expected_alpha)

    # 8-bit formats get the rounded values, alpha included
    eight = read_image(write_image(tmp_path / "out.webp", photo.rgb, like=photo, quality=100))
    assert eight.bit_depth == 8
    if expected_alpha is not None:
        np.testing.assert_array_equal(eight.alpha, (expected_alpha.astype(np.uint32) + 128) // 257)


def test_sixteen_bit_tiff_with_premultiplied_alpha(tmp_path: Path) -> None:
    alpha = np.full((H, W), 32768, np.uint16)
    alpha[0, 0] = 0
    straight = (COLOR16 // 2).astype(np.uint16)  # at most 32767, so premultiplied / alpha fits
    premultiplied = np.round(straight * (alpha[..., None] / 65535)).astype(np.uint16)
    write_tiff16(tmp_path / "a.tif", premultiplied, alpha=alpha, associated=True)
    photo = read_image(tmp_path / "a.tif")
    assert photo.bit_depth == 16
    np.testing.assert_array_equal(photo.alpha, alpha)
    error = np.abs(photo.rgb[1:].astype(np.int32) - straight[1:]).max()
    assert error <= 2, f"unpremultiplied pixels off by {error}"
    np.testing.assert_array_equal(photo.rgb[0, 0], 0)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_color_keeps_icc_dpi_and_exif(tmp_path: Path, suffix: str) -> None:
    icc = srgb_icc()
    exif = make_exif(orientation=1).tobytes()
    source = tmp_path / f"source{suffix}"
    if suffix == ".png":
        write_png16(source, COLOR16, icc=icc, exif=exif, dpi=(300, 200))
    else:
        write_tiff16(source, COLOR16, iccprofile=icc, resolution=(300, 200),
                     resolutionunit="INCH", extratags=[(MAKE, "s", 0, "TestCam", True)])

    photo = read_image(source)
    assert photo.bit_depth == 16
    np.testing.assert_array_equal(photo.rgb, COLOR16)  # an sRGB profile needs no conversion
    assert photo.icc_profile == icc
    assert photo.dpi == pytest.approx((300, 200), abs=0.5)

    out = write_image(tmp_path / f"out{suffix}", photo.rgb, like=photo)
    again = read_image(out)
    np.testing.assert_array_equal(again.rgb, COLOR16)
    assert again.icc_profile == icc
    assert again.dpi == pytest.approx((300, 200), abs=0.5)
    written = Image.Exif()
    written.load(again.exif)
    assert written[MAKE] == "TestCam"
    assert written.get(ORIENTATION, 1) == 1
    if suffix == ".png":  # the whole EXIF block travels in the eXIf chunk
        exif_ifd = written.get_ifd(ExifTags.IFD.Exif)
        assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "1950:06:01 12:00:00"
    with tifffile.TiffFile(out) if suffix == ".tif" else contextlib.nullcontext() as tif:
        if tif is not None:  # what other readers see: the standard tags, Deflate
            tags = tif.pages[0].tags
            assert tags["InterColorProfile"].value == icc
            assert tags["ResolutionUnit"].value == 2  # inch
            assert tags["Compression"].value == 8  # Adobe Deflate
            assert tags["Make"].value == "TestCam"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_png_orientation_matches_pillows_eight_bit_path(
        tmp_path: Path, orientation: int) -> None:
    stored = full_range16((10, 16, 3), seed=orientation)  # not square: turns change the size
    exif = make_exif(orientation=orientation).tobytes()
    # odd orientations put eXIf after the pixels, as some older writers do
    write_png16(tmp_path / "wide.png", stored, exif=exif, dpi=(300, 100),
                exif_after_pixels=orientation % 2 == 1)
    Image.fromarray((stored >> 8).astype(np.uint8)).save(tmp_path / "narrow.png", exif=exif,
                                                         dpi=(300, 100))
    wide, narrow = read_image(tmp_path / "wide.png"), read_image(tmp_path / "narrow.png")
    assert wide.bit_depth == 16 and wide.size == narrow.size
    np.testing.assert_array_equal(wide.rgb >> 8, narrow.rgb)
    assert wide.dpi == pytest.approx(narrow.dpi)
    written = Image.Exif()
    written.load(wide.exif)
    assert written[ORIENTATION] == 1 and written[MAKE] == "TestCam"


def test_sixteen_bit_tiff_orientation_is_applied(tmp_path: Path) -> None:
    stored = full_range16((10, 16, 3), seed=9)
    write_tiff16(tmp_path / "wide.tif", stored, extratags=[(ORIENTATION, "H", 1, 6, True)])
    Image.fromarray((stored >> 8).astype(np.uint8)).save(
        tmp_path / "narrow.tif", exif=make_exif(orientation=6).tobytes())
    wide, narrow = read_image(tmp_path / "wide.tif"), read_image(tmp_path / "narrow.tif")
    assert wide.size == narrow.size == (10, 16)
    np.testing.assert_array_equal(wide.rgb >> 8, narrow.rgb)
    assert read_image_size(tmp_path / "wide.tif") == (10, 16)


def test_sixteen_bit_gray_scan_is_written_back_as_sixteen_bit_rgb(tmp_path: Path) -> None:
    Image.fromarray(GRAY16_FULL).save(tmp_path / "scan.png", dpi=(600, 600))
    scan = read_image(tmp_path / "scan.png")
    assert scan.mode == "I;16" and scan.bit_depth == 16
    colorized = COLOR16  # what a colorizer returns at the scan's depth

    out = write_image(tmp_path / "color.png", colorized, like=scan)
    header = png16_header(out)
    assert (header["bitdepth"], header["planes"], header["greyscale"]) == (16, 3, False)
    again = read_image(out)
    assert again.mode == "RGB" and again.bit_depth == 16
    np.testing.assert_array_equal(again.rgb, colorized)
    assert again.dpi == pytest.approx((600, 600), abs=0.5)

    # float results follow like.bit_depth: 16 bits for this scan ...
    as_float = colorized.astype(np.float32) / 65535
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "f.tif", as_float,
                                                         like=scan)).rgb, colorized)
    # ... 8 bits for an 8-bit source
    eight = read_image(tmp_path / "scan.png")
    eight.bit_depth = 8
    assert read_image(write_image(tmp_path / "e.png", as_float, like=eight)).bit_depth == 8


def test_sixteen_bit_rgb_with_other_profile_is_converted_in_eight_bits(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The documented limit: Pillow converts 8-bit RGB only.
    stored = np.empty((H, W, 3), np.uint16)
    stored[...] = (200 * 257, 30 * 257, 90 * 257)
    write_png16(tmp_path / "tagged.png", stored, icc=swapped_rgb_icc())
    photo = read_image(tmp_path / "tagged.png")
    assert photo.rgb.dtype == np.uint8 and photo.bit_depth == 8
    expected = [gamma22_to_srgb(v) for v in (30, 200, 90)]
    np.testing.assert_allclose(photo.rgb[0, 0], expected, atol=1.5)
    assert "8 bits" in caplog.text

    # 16-bit output cannot be converted into that profile: it stays sRGB, tagged as such
    caplog.clear()
    out = write_image(tmp_path / "out.png", photo.rgb.astype(np.uint16) * 257, like=photo)
    with Image.open(out) as written:
        assert is_srgb_profile(written.info["icc_profile"])
    assert "sRGB profile" in caplog.text
    np.testing.assert_array_equal(read_image(out).rgb[0, 0], photo.rgb[0, 0].astype(int) * 257)


def test_tiff_compression_tifffile_cannot_decode_is_read_by_pillow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    write_tiff16(tmp_path / "lzw.tif", COLOR16)
    monkeypatch.setattr(sixteen_bit, "_tifffile_decodes", lambda compression: False)  # as for LZW
    photo = read_image(tmp_path / "lzw.tif")
    assert photo.bit_depth == 8
    np.testing.assert_array_equal(photo.rgb, (COLOR16 >> 8).astype(np.uint8))  # Pillow: high byte
    assert "imagecodecs" in caplog.text


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_truncated_sixteen_bit_files(tmp_path: Path, suffix: str) -> None:
    noisy = full_range16((64, 64, 3), seed=4)
    whole = write_image(tmp_path / f"whole{suffix}", noisy)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 4])
    _assert_read_error(cut, "truncated or corrupt")


def test_pillows_bomb_warning_is_silenced_only_while_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(RGB).save(tmp_path / "big.tif")  # 384 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # warns above 300, refuses above 600
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(tmp_path / "big.tif").rgb, RGB)
        assert read_image_size(tmp_path / "big.tif") == (W, H)
    with pytest.warns(Image.DecompressionBombWarning):  # elsewhere Pillow still warns
        Image.open(tmp_path / "big.tif").close()


def test_less_common_modes(tmp_path: Path) -> None:
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "bits.bmp")
    bits = read_image(tmp_path / "bits.bmp")
    assert bits.mode == "1" and bits.is_grayscale
    np.testing.assert_array_equal(bits.rgb[..., 2], np.eye(4) * 255)

    Image.fromarray(np.array([[-5, 70000, 1000]], dtype=np.int32)).save(tmp_path / "int.tif")
    wide = read_image(tmp_path / "int.tif")
    assert wide.mode == "I" and wide.bit_depth == 16
    np.testing.assert_array_equal(wide.rgb[0, :, 0], [0, 65535, 1000])

    lab = Image.new("LAB", (4, 4), (255, 128, 128))  # L* 100, a = b = 0: white
    lab.putpixel((0, 0), (128, 128, 128))  # L* 50: sRGB 119
    lab.save(tmp_path / "lab.tif")
    photo = read_image(tmp_path / "lab.tif")
    np.testing.assert_allclose(photo.rgb[0, 0], (119, 119, 119), atol=2)
    np.testing.assert_allclose(photo.rgb[2, 2], (255, 255, 255), atol=2)

    Image.fromarray(np.zeros((3, 3), np.float32)).save(tmp_path / "float.tif")
    _assert_read_error(tmp_path / "float.tif", "pixel mode F")


def test_mpo_reads_as_jpeg_first_frame(tmp_path: Path) -> None:
    first = Image.fromarray(np.full((8, 8, 3), (200, 10, 10), np.uint8))
    second = Image.fromarray(np.full((8, 8, 3), (10, 10, 200), np.uint8))
    first.save(tmp_path / "stereo.jpg", "MPO", save_all=True, append_images=[second])
    photo = read_image(tmp_path / "stereo.jpg")
    assert photo.format == "JPEG"
    np.testing.assert_allclose(photo.rgb[4, 4], (200, 10, 10), atol=6)


def test_grayscale_is_detected_in_rgb_files(tmp_path: Path) -> None:
    almost_gray = GRAY3.astype(np.int16)
    almost_gray[..., 0] += 1  # within one level still counts as gray
    Image.fromarray(almost_gray.clip(0, 255).astype(np.uint8)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").is_grayscale
    tinted = GRAY3.copy()
    tinted[5, 7] = (100, 110, 100)
    Image.fromarray(tinted).save(tmp_path / "tinted.png")
    assert not read_image(tmp_path / "tinted.png").is_grayscale


# ------------------------------------------------------------------------------------ orientation


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_exif_orientation_is_applied_once_and_reset(tmp_path: Path, suffix: str) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    source = tmp_path / f"rotated{suffix}"
    options = {"exif": make_exif(orientation=6).tobytes()}
    if suffix != ".webp":
        options["dpi"] = (300, 100)
    if suffix == ".webp":
        options["lossless"] = True
    Image.fromarray(stored).save(source, **options)

    assert read_image_size(source) == (20, 40)
    photo = read_image(source)
    # Orientation 6: the stored image is turned 90 degrees clockwise for display, so its left
    # (red) half becomes the top.
    assert photo.size == (20, 40)
    assert photo.rgb[5, 10, 0] > 200 and photo.rgb[5, 10, 2] < 50
    assert photo.rgb[35, 10, 2] > 200 and photo.rgb[35, 10, 0] < 50
    if suffix != ".webp":
        assert photo.dpi == pytest.approx((100, 300), abs=0.5)
    if suffix != ".tif":  # Pillow drops the tag from TIFFs as it applies it
        exif = Image.Exif()
        exif.load(photo.exif)
        assert exif[ORIENTATION] == 1
        assert exif[MAKE] == "TestCam"

    out = write_image(tmp_path / "out.jpg", photo.rgb, like=photo)
    with Image.open(out) as written:
        assert written.size == (20, 40)
        assert written.getexif().get(ORIENTATION, 1) == 1
    assert read_image(out).size == (20, 40)


def test_exif_is_copied_byte_for_byte_except_orientation(tmp_path: Path) -> None:
    exif = make_exif(orientation=8).tobytes()
    Image.fromarray(RGB).save(tmp_path / "a.jpg", exif=exif)
    photo = read_image(tmp_path / "a.jpg")
    assert len(photo.exif) == len(exif)
    differing = [i for i, (x, y) in enumerate(zip(photo.exif, exif)) if x != y]
    assert len(differing) == 1  # the low byte of the Orientation value: 8 -> 1
    assert photo.exif[differing[0]] == 1

    # TIFF keeps EXIF in its own IFD0: the tags must come through, sub-IFD included.
    write_image(tmp_path / "a.tif", photo.rgb, like=photo)
    with Image.open(tmp_path / "a.tif") as written:
        assert written.getexif()[MAKE] == "TestCam"
        exif_ifd = written.getexif().get_ifd(ExifTags.IFD.Exif)
        assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "1950:06:01 12:00:00"


# -------------------------------------------------------------------------------------------- ICC


def test_rgb_profile_is_converted_to_srgb_and_back(tmp_path: Path) -> None:
    icc = swapped_rgb_icc()
    stored = np.zeros((H, W, 3), np.uint8)
    stored[..., 0], stored[..., 1], stored[..., 2] = 200, 30, 90
    Image.fromarray(stored).save(tmp_path / "tagged.png", icc_profile=icc)

    photo = read_image(tmp_path / "tagged.png")
    assert photo.icc_profile == icc
    # The profile says channel 1 holds green and channel 2 red, with gamma 2.2, not sRGB's curve.
    expected = [gamma22_to_srgb(v) for v in (30, 200, 90)]
    np.testing.assert_allclose(photo.rgb[0, 0], expected, atol=1.5)

    out = write_image(tmp_path / "out.png", photo.rgb, like=photo)
    with Image.open(out) as written:
        assert written.info["icc_profile"] == icc
        np.testing.assert_allclose(np.asarray(written)[0, 0], stored[0, 0], atol=2)


def test_gray_profile_is_applied_and_replaced_by_srgb_on_output(tmp_path: Path) -> None:
    gray = Image.fromarray(np.full((H, W), 128, np.uint8))
    gray.save(tmp_path / "g.png", icc_profile=linear_gray_icc())
    photo = read_image(tmp_path / "g.png")
    assert photo.icc_profile == linear_gray_icc()
    np.testing.assert_allclose(photo.rgb[3, 3], (188, 188, 188), atol=1)  # linear 0.5 in sRGB

    out = write_image(tmp_path / "out.jpg", photo.rgb, like=photo)
    with Image.open(out) as written:
        assert is_srgb_profile(written.info["icc_profile"])
        np.testing.assert_allclose(np.asarray(written)[3, 3], (188, 188, 188), atol=2)


def test_gray_profile_on_sixteen_bit_gray_keeps_sixteen_bits(tmp_path: Path) -> None:
    levels = np.full((H, W), 128 * 257, np.uint16)
    levels[0, 0] = 128 * 257 + 40  # a difference 8 bits could not hold
    Image.fromarray(levels).save(tmp_path / "g16.png", icc_profile=linear_gray_icc())
    photo = read_image(tmp_path / "g16.png")
    assert photo.rgb.dtype == np.uint16
    assert abs(int(photo.rgb[1, 1, 0]) - 188 * 257) < 200
    assert 0 < int(photo.rgb[0, 0, 0]) - int(photo.rgb[1, 1, 0]) < 200


def test_cmyk_goes_through_its_profile(tmp_path: Path) -> None:
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[:, : W // 2, 0] = 255  # full cyan, no black: the K-only profile sees white
    cmyk[:, W // 2 :, 3] = 255  # full black
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100,
                                       icc_profile=k_only_cmyk_icc())
    photo = read_image(tmp_path / "c.jpg")
    assert photo.mode == "CMYK"
    assert photo.icc_profile == k_only_cmyk_icc()
    assert photo.rgb[H // 2, 2].min() > 240  # naive conversion would give cyan (0, 255, 255)
    assert photo.rgb[H // 2, W - 3].max() < 15

    out = write_image(tmp_path / "out.tif", photo.rgb, like=photo)
    with Image.open(out) as written:
        assert written.mode == "RGB"
        assert is_srgb_profile(written.info["icc_profile"])


def test_unparseable_profile_is_ignored(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "bad.png", icc_profile=b"not a profile at all" * 10)
    photo = read_image(tmp_path / "bad.png")
    np.testing.assert_array_equal(photo.rgb, RGB)
    assert photo.icc_profile is None


# -------------------------------------------------------------------------------------- bad files


def _assert_read_error(path: Path, *words: str, **kwargs) -> None:
    with pytest.raises(ImageReadError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _assert_read_error(tmp_path / "nowhere.jpg", "no such file")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _assert_read_error(tmp_path / "empty.jpg", "empty file")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image_size(tmp_path / "empty.jpg")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n" * 20)
    _assert_read_error(tmp_path / "notes.jpg", "not an image file Pillow can read")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files(tmp_path: Path, suffix: str) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(noisy).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _assert_read_error(cut, "truncated or corrupt")


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "small.png")
    _assert_read_error(tmp_path / "small.png", "100 x 100 = 10,000 pixels", "limit of 1,000",
                       "max_pixels", max_pixels=1000)
    assert read_image(tmp_path / "small.png", max_pixels=10_000).size == (100, 100)


def test_default_limit_stops_a_file_claiming_huge_dimensions(tmp_path: Path) -> None:
    # 20000 x 20000 in the header, a few bytes of data: refused before any pixel is allocated.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))
    assert 20000 * 20000 > DEFAULT_MAX_PIXELS
    _assert_read_error(bomb, "20000 x 20000 = 400,000,000 pixels", f"{DEFAULT_MAX_PIXELS:,}")
    # The header alone is readable, which Image.open (with Pillow's global limit) would refuse.
    assert read_image_size(bomb) == (20000, 20000)


def test_pillows_own_limit_inside_a_decoder_becomes_a_read_error(tmp_path: Path) -> None:
    # A 10 x 10 GIF whose first frame claims 20000 x 20000: Pillow's GIF plugin checks it itself.
    gif = (b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
           + b"\x2c" + struct.pack("<HHHHB", 0, 0, 20000, 20000, 0) + b"\x02\x02\x4c\x01\x00;")
    (tmp_path / "bomb.gif").write_bytes(gif)
    _assert_read_error(tmp_path / "bomb.gif", "400000000 pixels", "MAX_IMAGE_PIXELS")


# ---------------------------------------------------------------------------------------- writing


def test_float_is_written_at_eight_bits_and_uint16_at_sixteen(tmp_path: Path) -> None:
    values = np.linspace(0, 1, W * H * 3, dtype=np.float32).reshape(H, W, 3)
    write_image(tmp_path / "f.png", values)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png").rgb, np.round(values * 255))
    assert png16_header(tmp_path / "f.png")["bitdepth"] == 8
    wide = full_range16((H, W, 3))
    for name in ("w.png", "w.tif"):
        again = read_image(write_image(tmp_path / name, wide))
        assert again.bit_depth == 16
        np.testing.assert_array_equal(again.rgb, wide)
    for name in ("w.jpg", "w.webp", "w.bmp"):  # these formats hold 8 bits
        again = read_image(write_image(tmp_path / name, wide, quality=100))
        assert again.bit_depth == 8
        if name == "w.bmp":
            np.testing.assert_array_equal(again.rgb, (wide.astype(np.uint32) + 128) // 257)
    write_image(tmp_path / "c.png", np.full((2, 2, 3), 1.7))
    assert read_image(tmp_path / "c.png").rgb.min() == 255


def test_format_argument_overrides_suffix(tmp_path: Path) -> None:
    path = write_image(tmp_path / "result.dat", RGB, format="png")
    with Image.open(path) as written:
        assert written.format == "PNG"


def test_gif_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="PNG"):
        write_image(tmp_path / "out.gif", RGB)
    with pytest.raises(ImageWriteError, match="PNG"):
        write_image(tmp_path / "out.png", RGB, format="GIF")
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "out.xyz", RGB)
    assert list(tmp_path.iterdir()) == []


def test_jpeg_drops_alpha_and_mismatched_alpha_is_refused(tmp_path: Path) -> None:
    Image.fromarray(RGBA, "RGBA").save(tmp_path / "a.png")
    photo = read_image(tmp_path / "a.png")
    with Image.open(write_image(tmp_path / "out.jpg", photo.rgb, like=photo)) as written:
        assert written.mode == "RGB"
    with pytest.raises(ImageWriteError, match="alpha"):
        write_image(tmp_path / "small.png", photo.rgb[:8], like=photo)
    assert not (tmp_path / "small.png").exists()


def test_nan_pixels_are_refused(tmp_path: Path) -> None:
    values = np.zeros((H, W, 3), np.float32)
    values[1, 1, 1] = np.nan
    with pytest.raises(ImageWriteError, match="NaN"):
        write_image(tmp_path / "out.png", values)


def test_write_into_missing_folder_raises_write_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.png"
    with pytest.raises(ImageWriteError) as caught:
        write_image(target, RGB)
    assert str(target) in str(caught.value)


def test_supported_suffixes() -> None:
    assert SUPPORTED_SUFFIXES == {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}


# ----------------------------------------------------------------------------------- atomic_write


def test_failed_atomic_write_leaves_target_and_folder_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old content")

    def fail(fp) -> None:
        fp.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_replaces_target_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    atomic_write(target, lambda fp: fp.write(b"new content"))
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_photo_size_is_width_then_height() -> None:
    photo = Photo(path=None, rgb=np.full((3, 5, 3), 51, np.uint8), alpha=None, format="PNG",
                  mode="RGB", bit_depth=8, icc_profile=None, exif=None, dpi=None, is_grayscale=True)
    assert photo.size == (5, 3)
    assert photo.rgb_float().max() == pytest.approx(0.2)
