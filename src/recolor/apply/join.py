"""The full-resolution join of `recolor apply`: the network's ab, brought from render size to the
photo's size, joined with the photo's own L and encoded to sRGB.

Per pixel: ab is upsampled (bilinearly, or anchored on a guided filter's slope so that it follows
the edges of L), Lab -> XYZ -> linear sRGB, colors outside sRGB pulled towards gray at constant L
and hue (a bisection on the chroma scale, for just the pixels outside), then the sRGB curve: to
8 bits, or to 16 for a 16-bit photo written as PNG or TIFF (so its L is the input's to 16-bit
precision).

Two implementations of the same math:

- `join` (the CPU): OpenCV's vectorised kernels (resize, LUT, transform, pow, min/max), one call
  per step on bands of rows (`BAND_PIXELS`), single-threaded: apply runs one join per encoding
  thread. About a sixth of the numpy join it replaces (docs/performance.md). The bisection of the
  few out-of-gamut pixels stays numpy, on those pixels alone.
- `recolor.apply.join_device.join_tensor` (torch, on any device): the path of `--device cuda`,
  where everything after decoding runs on the GPU. This module imports no torch: the CPU path of
  `recolor apply` runs without it.

Both agree with scikit-image's lab2rgb to one 8-bit level inside the gamut (tests), and with each
other. The 8-bit sRGB curve of `join` goes through a 256-entry table indexed by sqrt(linear): one
lookup instead of a pow per channel, within one level of the exact curve (the curve moves at most
0.71 of a level within one index step).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

from recolor.colorspace import D65_WHITE, LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ
from recolor.errors import UsageError
from recolor.io.photo import Photo

UPSAMPLE_MODES = ("bilinear", "guided")
# The guided filter's slope, fitted at render size: window radius in render pixels, and the
# regulariser on the variance of L/100 (smaller: follows L edges more closely, and L's grain too).
# Chosen on scikit-image's color samples with benchmarks/upsample_quality.py.
GUIDED_RADIUS = 1
GUIDED_EPS = 1e-3
# Rows are joined in bands of about this many pixels: few enough OpenCV calls per photo that their
# overhead does not count, small enough that a band's float planes stay in a core's L2 cache.
BAND_PIXELS = 1 << 17
# Linear values this far above 1 still count as inside the gamut: with these matrices Lab white
# (100, 0, 0) itself comes out at linear (1.000007, 0.99999, 1.00008). Clipping that much moves L by
# at most 0.004.
GAMUT_TOLERANCE_HIGH = 1e-4
# ... and this far below 0, by bit depth: about 0.3 of an 8-bit level near black, and 0.8 of a
# 16-bit level (clipping 1e-4 there would move L by up to 0.07).
GAMUT_TOLERANCE_LOW = {8: 1e-4, 16: 1e-6}
# Chroma-scale bisection steps for out-of-gamut colors: 1/128 of the chroma.
GAMUT_STEPS = 7
_F32 = np.float32
_Y_WEIGHTS = np.array(RGB_TO_XYZ[1], dtype=np.float32)  # sRGB linear -> Y
# Lab reaches the math below as fy = (L + 16) / 116, Y/Yn = f^-1(fy), da = a / 500 and db = -b / 200:
# X/Xn = f^-1(fy + da) and Z/Zn = f^-1(fy + db). join scales ab into da and db at render size,
# before upsampling (which is linear).
TO_DA_DB = (1 / 500, -1 / 200)
LAB_KNEE = 6 / 29  # where CIE f^-1 turns from the cube to its linear segment
SRGB_KNEE = 0.0031308  # where the sRGB curve turns from linear to the power
# f^-1(f) = max(f, k)^3 + 3k^2 (min(f, k) - k) without a branch: the constant goes into the matrix.
_CUBE_OFFSET = -3 * LAB_KNEE**3


# ------------------------------------------------------------------------------------------ tables


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > LAB_EPSILON, np.cbrt(t), (LAB_KAPPA * t + 16) / 116).astype(t.dtype, copy=False)


@functools.lru_cache(maxsize=2)
def code_tables(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(linear light, CIE L of a gray pixel) of each code 0 .. levels-1, as float32 tables."""
    codes = np.arange(levels, dtype=np.float64) / (levels - 1)
    linear = np.where(codes > 0.04045, ((codes + 0.055) / 1.055) ** 2.4, codes / 12.92)
    return linear.astype(np.float32), (116 * _lab_f(linear) - 16).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _gray_luts(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(fy, Y) of a gray pixel of each code 0 .. levels-1: fy = (L + 16) / 116 and Y = f^-1(fy)."""
    fy = (code_tables(levels)[1] + _F32(16)) / _F32(116)
    return fy, _lab_f_inverse(fy)


@functools.lru_cache(maxsize=1)
def linear_matrix() -> np.ndarray:
    """(X/Xn, Z/Zn, Y/Yn) -> linear sRGB: the white point folded in, the columns in the order the
    join's planes hold them."""
    xyz_to_linear = np.linalg.inv(np.array(RGB_TO_XYZ, dtype=np.float64)) * np.array(D65_WHITE)[None, :]
    return np.ascontiguousarray(xyz_to_linear[:, [0, 2, 1]], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _cube_affine() -> np.ndarray:
    """`linear_matrix` as the 3 x 4 affine map of cv2.transform, with the constant of the branchless
    f^-1 of X and Z (see _CUBE_OFFSET) in its last column."""
    matrix = linear_matrix().astype(np.float64)
    offset = matrix[:, 0] * _CUBE_OFFSET + matrix[:, 1] * _CUBE_OFFSET
    return np.hstack([matrix, offset[:, None]]).astype(np.float32)


# --------------------------------------------------------------------------- numpy pieces (small)


def _lab_f_inverse(f: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The inverse of CIE Lab's f: f^3 above 6/29, its linear segment below (float32, any shape)."""
    knee = _F32(LAB_KNEE)
    dark = np.flatnonzero(f <= knee) if f.size and f.min() <= knee else None
    if dark is not None:
        segment = np.ravel(f)[dark] * _F32(116 / LAB_KAPPA) - _F32(16 / LAB_KAPPA)
    out = np.multiply(f * f, f, out=out)
    if dark is not None:
        np.put(out, dark, segment)
    return out


def _lab_to_linear(fy: np.ndarray, y: np.ndarray, da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Lab as fy, Y, da, db (1-d, one length) -> linear sRGB (3, n) float32, unclipped."""
    xzy = np.stack([fy + da, fy + db, y])
    _lab_f_inverse(xzy[:2], out=xzy[:2])
    return linear_matrix() @ xzy


def _outside(linear: np.ndarray, low: float, high: float) -> np.ndarray:
    return ((linear < low) | (linear > high)).any(axis=0)


def _pull_into_gamut(fy: np.ndarray, y: np.ndarray, da: np.ndarray, db: np.ndarray, *, low: float, high: float,
                     steps: int = GAMUT_STEPS) -> np.ndarray:
    """Linear sRGB (3, n) of Lab colors (1-d fy, Y, da, db) outside the gamut, desaturated at constant
    L and hue: the largest chroma scale s in [0, 1] found by bisection (s = 0, gray, is inside)."""
    lower, upper = np.zeros_like(fy), np.ones_like(fy)
    for _ in range(steps):
        middle = (lower + upper) * _F32(0.5)
        inside = ~_outside(_lab_to_linear(fy, y, da * middle, db * middle), low, high)
        lower = np.where(inside, middle, lower)
        upper = np.where(inside, upper, middle)
    return _lab_to_linear(fy, y, da * lower, db * lower)


def lightness(rgb: np.ndarray, *, gray: bool = False) -> np.ndarray:
    """CIE L in [0, 100] of sRGB pixels (H, W, 3) uint8 or uint16, as float32 (H, W).

    The same L as `recolor.color.rgb_to_lab`, through lookup tables of the sRGB curve; with `gray`
    (R = G = B) the whole L is one table lookup.
    """
    linear_lut, gray_lut = code_tables(65536 if rgb.dtype == np.uint16 else 256)
    if gray:
        return np.take(gray_lut, rgb[..., 0])
    return 116 * _lab_f(np.take(linear_lut, rgb) @ _Y_WEIGHTS) - _F32(16)


# ------------------------------------------------------------------------- the network's input


def _shrink(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 or uint16, or (H, W, 3) uint8 -> `size` (w, h), same dtype, by Pillow's
    antialiased bicubic resize."""
    if pixels.dtype == np.uint16:
        # Pillow has no 16-bit RGB mode, and it cannot reduce I;16: resample one channel in float.
        channel = Image.fromarray(np.multiply(pixels, _F32(1 / 65535), dtype=np.float32))
        small = np.asarray(channel.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0))
        return np.clip(small * _F32(65535) + _F32(0.5), 0, 65535).astype(np.uint16)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0))


def network_lightness(photo: Photo, shape: tuple[int, int]) -> np.ndarray:
    """L in [0, 100] (h, w) float32 of the photo (8 or 16 bit, gray or RGB) shrunk to `shape` (h, w)
    with Pillow's antialiased resize."""
    height, width = shape
    if photo.is_grayscale:  # one channel: a fraction of the memory and time of RGB
        small = _shrink(photo.rgb[..., 0], (width, height))
        rgb = np.repeat(small[..., None], 3, axis=2)
    elif photo.rgb.dtype == np.uint16:  # 16-bit RGB: channel by channel
        rgb = np.stack([_shrink(photo.rgb[..., channel], (width, height)) for channel in range(3)], axis=-1)
    else:
        rgb = _shrink(photo.rgb, (width, height))
    return np.ascontiguousarray(lightness(rgb, gray=photo.is_grayscale))


# ----------------------------------------------------------------------------- the guided filter


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window of each plane of (c, h, w) float32; windows are cut at the border
    (not zero-padded): the sum over the window divided by the count of pixels inside the image."""
    size = (2 * radius + 1, 2 * radius + 1)
    count = cv2.boxFilter(np.ones(x.shape[1:], np.float32), -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return np.stack([cv2.boxFilter(plane, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT) / count
                     for plane in x])


def guided_slope(guide: np.ndarray, ab: np.ndarray, *, radius: int = GUIDED_RADIUS,
                 eps: float = GUIDED_EPS) -> np.ndarray:
    """The slope A of the guided filter's local model ab ~ A * guide + B, at render size (He et al. 2013).

    `guide`: L/100 (h, w) in [0, 1]; `ab`: (2, h, w); returns A (2, h, w) float32, box-averaged as in
    the filter. The join uses it anchored on the bilinear result: ab_full = up(ab) + up(A) * (L_full/100 -
    up(guide)), so where L has no detail the result is exactly bilinear, and where L has an edge the
    color follows it. (The plain fast guided filter, up(A) * L + up(B), also blurs ab by its box
    means: on scikit-image's color samples it lost to bilinear; see benchmarks/upsample_quality.py.)
    """
    guide = np.asarray(guide, dtype=np.float32)[None]
    ab = np.asarray(ab, dtype=np.float32)
    mean_i = _box(guide, radius)
    mean_p = _box(ab, radius)
    cov = _box(guide * ab, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i * mean_i
    return _box(cov / (var + np.float32(eps)), radius)


def small_planes(ab_small: np.ndarray, l_small: np.ndarray, *, upsample: str, saturation: float) -> np.ndarray:
    """What the join upsamples, at render size, float32: (a, b) times `saturation`, and for guided
    also the guided filter's slope of each (same units) and the guide L/100 -> (2 or 5, h, w)."""
    if upsample not in UPSAMPLE_MODES:
        raise UsageError(f"unknown upsampling {upsample!r}", f"use one of {', '.join(UPSAMPLE_MODES)}")
    ab_small = np.asarray(ab_small, dtype=np.float32) * np.float32(saturation)
    if upsample == "bilinear":
        return ab_small
    guide = np.asarray(l_small, dtype=np.float32)[None] / np.float32(100)
    return np.concatenate((ab_small, guided_slope(guide[0], ab_small), guide), axis=0)


# ------------------------------------------------------------------------------ the CPU join (OpenCV)


def _branchless_cube(f: np.ndarray) -> np.ndarray:
    """max(f, k)^3 + 3k^2 min(f, k) for (n, W) float32 `f` (overwritten): CIE f^-1 less a constant
    (_CUBE_OFFSET, added by the matrix)."""
    knee = LAB_KNEE
    clamped = cv2.max(f, knee)
    cube = cv2.multiply(clamped, clamped)
    cv2.multiply(cube, clamped, dst=cube)
    cv2.min(f, knee, dst=f)
    return cv2.scaleAdd(f, 3 * knee * knee, cube, dst=cube)


def _lab_f_cv(y: np.ndarray) -> np.ndarray:
    """CIE f of Y (n, W) float32 without a branch: max(t, e)^(1/3) + kappa/116 (min(t, e) - e)."""
    root = cv2.pow(cv2.max(y, LAB_EPSILON), 1 / 3)
    dark = cv2.min(y, LAB_EPSILON)
    return cv2.subtract(cv2.scaleAdd(dark, LAB_KAPPA / 116, root, dst=root), LAB_KAPPA * LAB_EPSILON / 116)


def _encode16(linear: np.ndarray, out: np.ndarray) -> None:
    """Linear sRGB (n, W, 3) float32 (overwritten), already inside the gamut to its tolerance ->
    16-bit sRGB codes (rounded) written into `out` (n, W, 3) uint16."""
    flat = linear.reshape(linear.shape[0], -1)  # one channel: cv2 applies a scalar to channel 0 only
    cv2.max(flat, 0.0, dst=flat)
    cv2.min(flat, 1.0, dst=flat)
    # The sRGB curve without a branch: 1.055 max(x, k)^(1/2.4) - 0.055 + 12.92 (min(x, k) - k).
    power = cv2.pow(cv2.max(flat, SRGB_KNEE), 1 / 2.4)
    cv2.min(flat, SRGB_KNEE, dst=flat)
    curve = cv2.scaleAdd(flat, 12.92 / 1.055, power, dst=power)
    curve *= _F32(1.055 * 65535)
    curve += _F32((-0.055 - 12.92 * SRGB_KNEE) * 65535 + 0.5)
    out.reshape(out.shape[0], -1)[...] = curve  # truncating the value + 0.5: rounding


def _encode_exact(linear: np.ndarray, *, top: int) -> np.ndarray:
    """Linear sRGB (any shape) -> codes 0..`top` by the sRGB curve itself, rounded (numpy, for few pixels)."""
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear > SRGB_KNEE, _F32(1.055) * np.power(linear, _F32(1 / 2.4)) - _F32(0.055),
                    linear * _F32(12.92))
    return np.floor(srgb * _F32(top) + _F32(0.5))


def _exact_band(fy: np.ndarray, y: np.ndarray, da: np.ndarray, db: np.ndarray, out: np.ndarray, *,
                bit_depth: int, steps: int = GAMUT_STEPS) -> None:
    """Lab as fy, Y, da, db (each (n, W) float32) -> sRGB into `out` (n, W, 3), every step in float32
    OpenCV kernels of our own matrices: the 16-bit path, where OpenCV's own Lab -> RGB (its sRGB
    curve is a spline, up to 17 16-bit levels off) is not precise enough."""
    fx = cv2.add(fy, da)
    fz = cv2.add(fy, db)
    xzy = cv2.merge([_branchless_cube(fx), _branchless_cube(fz), y])
    linear = cv2.transform(xzy, _cube_affine(), dst=xzy)
    low, high = -GAMUT_TOLERANCE_LOW[bit_depth], 1 + GAMUT_TOLERANCE_HIGH
    smallest, largest, _, _ = cv2.minMaxLoc(linear.reshape(linear.shape[0], -1))
    if smallest < low or largest > high:  # some pixel is outside sRGB: find them (usually few)
        inside = cv2.inRange(linear, (low, low, low), (high, high, high))
        outside = np.flatnonzero(inside == 0)
        pulled = _pull_into_gamut(*(np.ravel(plane)[outside] for plane in (fy, y, da, db)), low=low, high=high,
                                  steps=steps)
        linear.reshape(-1, 3)[outside] = pulled.T
    if bit_depth == 16:
        _encode16(linear, out)
    else:
        out.reshape(-1, 3)[...] = _encode_exact(linear.reshape(-1, 3), top=255)


def _srgb8_band(lightness_values: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray, *,
                steps: int = GAMUT_STEPS) -> None:
    """Lab (each (n, W) float32, natural units) -> 8-bit sRGB into `out` (n, W, 3) uint8.

    OpenCV's Lab -> RGB does the whole conversion in one pass (within 0.07 of an 8-bit level of
    the exact one), but clips each channel of a color outside sRGB, which shifts its L and hue.
    Such a color shows as a code 0 or 255 in some channel: those pixels (with the dark and bright
    ones inside the gamut that have such a code too, usually few) are redone exactly here, outside
    colors pulled in at constant L and hue.
    """
    rgb = cv2.cvtColor(cv2.merge([lightness_values, a, b]), cv2.COLOR_Lab2RGB)
    rows = out.shape[0]
    view = out.reshape(rows, -1)
    encoded = cv2.convertScaleAbs(rgb.reshape(rows, -1), dst=view, alpha=255.0)  # rounded, saturated
    if encoded is not view:
        view[...] = encoded
    clear = cv2.inRange(out, (1, 1, 1), (254, 254, 254))
    if cv2.countNonZero(clear) == clear.size:
        return
    redo = np.flatnonzero(clear == 0)
    fy = (np.ravel(lightness_values)[redo] + _F32(16)) / _F32(116)
    y = _lab_f_inverse(fy)
    da = np.ravel(a)[redo] * _F32(TO_DA_DB[0])
    db = np.ravel(b)[redo] * _F32(TO_DA_DB[1])
    low, high = -GAMUT_TOLERANCE_LOW[8], 1 + GAMUT_TOLERANCE_HIGH
    linear = _lab_to_linear(fy, y, da, db)
    outside = np.flatnonzero(_outside(linear, low, high))
    if outside.size:
        linear[:, outside] = _pull_into_gamut(fy[outside], y[outside], da[outside], db[outside], low=low,
                                              high=high, steps=steps)
    out.reshape(-1, 3)[redo] = _encode_exact(linear, top=255).T


def lab_to_srgb(lightness_values: np.ndarray, ab: np.ndarray, *, bit_depth: int = 8,
                steps: int = GAMUT_STEPS) -> np.ndarray:
    """L (h, w) in [0, 100] and ab (2, h, w) -> sRGB (h, w, 3): uint8 (0-255) with `bit_depth` 8,
    within one level of exact; uint16 (0-65535) with `bit_depth` 16, within 0.51 of a level.

    Colors outside the sRGB gamut are desaturated at constant L and hue rather than clipped per
    channel (which shifts both): a bisection over the chroma scale s in [0, 1] (s = 0, gray, is
    always inside) for just the pixels that need it, usually few.
    """
    if bit_depth not in GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    lightness_values = np.ascontiguousarray(lightness_values, dtype=np.float32)
    a, b = (np.ascontiguousarray(plane, dtype=np.float32) for plane in ab)
    out = np.empty((*lightness_values.shape, 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    if bit_depth == 8:
        _srgb8_band(lightness_values, a, b, out, steps=steps)
    else:
        fy = (lightness_values + _F32(16)) / _F32(116)
        _exact_band(fy, _lab_f_inverse(fy), a * _F32(TO_DA_DB[0]), b * _F32(TO_DA_DB[1]), out,
                    bit_depth=16, steps=steps)
    return out


def _band_lightness(rows: np.ndarray, gray: bool) -> np.ndarray:
    """CIE L in [0, 100] (n, W) float32 of a band of pixels (n, W, 3) uint8 or uint16 (`lightness`
    in OpenCV kernels)."""
    eight = rows.dtype == np.uint8
    linear_lut, gray_lut = code_tables(256 if eight else 65536)
    if gray:  # L by table, from the code of each pixel
        codes = cv2.extractChannel(rows, 0) if rows.flags.c_contiguous else np.ascontiguousarray(rows[..., 0])
        return cv2.LUT(codes, gray_lut) if eight else np.take(gray_lut, codes)
    linear = cv2.LUT(rows, linear_lut) if eight else np.take(linear_lut, rows)
    values = _lab_f_cv(cv2.transform(linear, _Y_WEIGHTS[None, :]))
    values *= _F32(116)
    values -= _F32(16)
    return values


def join(photo: Photo, ab_small: np.ndarray, l_small: np.ndarray, *, upsample: str = "bilinear",
         saturation: float = 1.0, bit_depth: int | None = None) -> np.ndarray:
    """The full-resolution result (H, W, 3): the photo's own L with ab upsampled from render size.

    `ab_small`: (2, h, w) in natural units (about -110..110); `l_small`: (h, w) L in [0, 100], the
    network's input (the guide of the guided filter). `saturation` multiplies the chroma (0: gray).
    The result is uint16 (0-65535) when `bit_depth` is 16, uint8 when 8; None: the photo's own
    depth. Works in bands of rows, so the float temporaries stay small whatever the photo's size
    (OpenCV's kernels round a few ulps differently by a row's length, so a band size moves a pixel
    by at most one level).
    """
    bit_depth = photo.bit_depth if bit_depth is None else bit_depth
    if bit_depth not in GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    small = small_planes(ab_small, l_small, upsample=upsample, saturation=saturation)
    height, width = photo.rgb.shape[:2]
    if upsample == "guided":
        small[4] = -small[4]  # so that L/100 - up(guide) is one scaleAdd
    # Bilinear upsampling is separable: rows first, at render width (H x w per plane, small), then
    # each band's columns. Both are cv2.resize with one side unchanged, so each is exact in that
    # direction (the same numbers as torch's bilinear interpolate) and no band depends on another.
    tall = [cv2.resize(np.ascontiguousarray(plane), (small.shape[2], height), interpolation=cv2.INTER_LINEAR)
            for plane in small]
    result = np.empty((height, width, 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    band = max(1, BAND_PIXELS // width)
    for start in range(0, height, band):
        stop = min(height, start + band)
        wide = [cv2.resize(plane[start:stop], (width, stop - start), interpolation=cv2.INTER_LINEAR)
                for plane in tall]
        lightness_values = _band_lightness(photo.rgb[start:stop], photo.is_grayscale)
        a, b = wide[0], wide[1]
        if upsample == "guided":
            offset = cv2.scaleAdd(lightness_values, 0.01, wide[4])  # L/100 - up(guide)
            a = cv2.add(a, cv2.multiply(wide[2], offset))
            b = cv2.add(b, cv2.multiply(wide[3], offset))
        if bit_depth == 8:
            _srgb8_band(lightness_values, a, b, result[start:stop])
        else:
            fy = (lightness_values + _F32(16)) / _F32(116)
            _exact_band(fy, _lab_f_inverse(fy), a * _F32(TO_DA_DB[0]), b * _F32(TO_DA_DB[1]),
                        result[start:stop], bit_depth=16)
    return result


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own threads per call set to `count` inside the block (restored after)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
