"""ICC colour profiles: sources converted to sRGB (8-bit RGB, gray at any depth), sRGB results
converted back into a source's own profile, and the test for profiles that are sRGB in all but name.
"""

from __future__ import annotations

import io
import logging
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import (
    Image,
    ImageCms,
)

log = logging.getLogger(__name__)


RENDERING_INTENT = ImageCms.Intent.PERCEPTUAL


# -------------------------------------------------------------------------------------------- ICC


@lru_cache(maxsize=1)
def srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=1)
def srgb_icc_bytes() -> bytes:
    return srgb_profile().tobytes()


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
def acts_like_srgb(icc: bytes) -> bool | None:
    """Whether converting from this RGB profile to sRGB moves no 8-bit value by more than one
    level (a grid of 18^3 colors); None when littlecms cannot use the profile.

    Such a profile is sRGB under another name (or close enough), so 16-bit pixels need no
    conversion, which Pillow could only do in 8 bits.
    """
    try:
        transform = profile_transform(icc, "RGB", "RGB", True)
    except ImageCms.PyCMSError:
        return None
    levels = np.linspace(0, 255, 18).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 18, 3)
    converted = np.asarray(ImageCms.applyTransform(Image.fromarray(grid), transform))
    return int(np.abs(converted.astype(np.int16) - grid).max()) <= 1


@lru_cache(maxsize=8)
def _profile_from_bytes(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def parse_profile(icc: bytes, path: Path) -> ImageCms.ImageCmsProfile | None:
    try:
        return _profile_from_bytes(icc)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        # A broken tag should not make the photo unreadable; untagged pixels count as sRGB.
        log.warning("%s: ignoring its embedded ICC profile, which cannot be parsed (%s)", path, e)
        return None


def color_space(profile: ImageCms.ImageCmsProfile) -> str:
    return profile.profile.xcolor_space.strip()


def profile_matches(profile: ImageCms.ImageCmsProfile | None, mode: str) -> bool:
    if profile is None:
        return False
    wanted = {"L": "GRAY", "I;16": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}.get(mode)
    return color_space(profile) == wanted


@lru_cache(maxsize=16)
def profile_transform(
    icc: bytes, in_mode: str, out_mode: str, to_srgb: bool
) -> ImageCms.ImageCmsTransform:
    profile = _profile_from_bytes(icc)
    target = _srgb_gray_profile() if out_mode in ("L", "I;16") else srgb_profile()
    if to_srgb:
        return ImageCms.buildTransform(profile, target, in_mode, out_mode, RENDERING_INTENT)
    return ImageCms.buildTransform(target, profile, in_mode, out_mode, RENDERING_INTENT)


def profile_to_srgb(
    image: Image.Image, icc: bytes, profile: ImageCms.ImageCmsProfile, path: Path
) -> Image.Image:
    if not profile_matches(profile, image.mode):
        log.warning("%s: ignoring its %s ICC profile, which does not fit pixel mode %s",
                    path, color_space(profile), image.mode)
        return image
    out_mode = "RGB" if image.mode == "CMYK" else image.mode
    try:
        transform = profile_transform(icc, image.mode, out_mode, True)
    except ImageCms.PyCMSError as e:
        log.warning("%s: ignoring its ICC profile, which littlecms cannot use (%s)", path, e)
        return image
    return ImageCms.applyTransform(image, transform)


def srgb_to_profile(image: Image.Image, icc: bytes, path: Path) -> tuple[Image.Image, bytes]:
    """Convert sRGB `image` into the source's RGB profile; sRGB with its profile otherwise."""
    profile = parse_profile(icc, path)
    if profile is None or color_space(profile) != "RGB":
        return image, srgb_icc_bytes()
    try:
        transform = profile_transform(icc, "RGB", "RGB", False)
    except ImageCms.PyCMSError as e:  # an input-only profile (no inverse): leave the pixels sRGB
        log.warning("%s: writing sRGB, the source's ICC profile cannot be written into (%s)",
                    path, e)
        return image, srgb_icc_bytes()
    return ImageCms.applyTransform(image, transform), icc
