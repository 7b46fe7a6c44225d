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
- `join_tensor` (torch, on any device): the path of `--device cuda`, where everything after
  decoding runs on the GPU (`network_lightness_tensor` does the shrink there too).

Both agree with scikit-image's lab2rgb to one 8-bit level inside the gamut (tests), and with each
other. The 8-bit sRGB curve of `join` goes through a 256-entry table indexed by sqrt(linear): one
lookup instead of a pow per channel, within one level of the exact curve (the curve moves at most
0.71 of a level within one index step).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from recolor.color import D65_WHITE, LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ
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
# ... and on a device, in bands of this many: device memory stays bounded for any photo size.
DEVICE_BAND_PIXELS = 1 << 22
# Linear values this far above 1 still count as inside the gamut: with these matrices Lab white
# (100, 0, 0) itself comes out at linear (1.000007, 0.99999, 1.00008). Clipping that much moves L by
# at most 0.004.
_GAMUT_TOLERANCE_HIGH = 1e-4
# ... and this far below 0, by bit depth: about 0.3 of an 8-bit level near black, and 0.8 of a
# 16-bit level (clipping 1e-4 there would move L by up to 0.07).
_GAMUT_TOLERANCE_LOW = {8: 1e-4, 16: 1e-6}
# Chroma-scale bisection steps for out-of-gamut colors: 1/128 of the chroma.
GAMUT_STEPS = 7
_F32 = np.float32
_Y_WEIGHTS = np.array(RGB_TO_XYZ[1], dtype=np.float32)  # sRGB linear -> Y
# Lab reaches the math below as fy = (L + 16) / 116, Y/Yn = f^-1(fy), da = a / 500 and db = -b / 200:
# X/Xn = f^-1(fy + da) and Z/Zn = f^-1(fy + db). join scales ab into da and db at render size,
# before upsampling (which is linear).
_TO_DA_DB = (1 / 500, -1 / 200)
_KNEE = 6 / 29  # where CIE f^-1 turns from the cube to its linear segment
_SRGB_KNEE = 0.0031308  # where the sRGB curve turns from linear to the power
# f^-1(f) = max(f, k)^3 + 3k^2 (min(f, k) - k) without a branch: the constant goes into the matrix.
_CUBE_OFFSET = -3 * _KNEE**3


# ------------------------------------------------------------------------------------------ tables


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > LAB_EPSILON, np.cbrt(t), (LAB_KAPPA * t + 16) / 116).astype(t.dtype, copy=False)


@functools.lru_cache(maxsize=2)
def _luts(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(linear light, CIE L of a gray pixel) of each code 0 .. levels-1, as float32 tables."""
    codes = np.arange(levels, dtype=np.float64) / (levels - 1)
    linear = np.where(codes > 0.04045, ((codes + 0.055) / 1.055) ** 2.4, codes / 12.92)
    return linear.astype(np.float32), (116 * _lab_f(linear) - 16).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _gray_luts(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(fy, Y) of a gray pixel of each code 0 .. levels-1: fy = (L + 16) / 116 and Y = f^-1(fy)."""
    fy = (_luts(levels)[1] + _F32(16)) / _F32(116)
    return fy, _lab_f_inverse(fy)


@functools.lru_cache(maxsize=1)
def _linear_matrix() -> np.ndarray:
    """(X/Xn, Z/Zn, Y/Yn) -> linear sRGB: the white point folded in, the columns in the order the
    join's planes hold them."""
    xyz_to_linear = np.linalg.inv(np.array(RGB_TO_XYZ, dtype=np.float64)) * np.array(D65_WHITE)[None, :]
    return np.ascontiguousarray(xyz_to_linear[:, [0, 2, 1]], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _cube_affine() -> np.ndarray:
    """`_linear_matrix` as the 3 x 4 affine map of cv2.transform, with the constant of the branchless
    f^-1 of X and Z (see _CUBE_OFFSET) in its last column."""
    matrix = _linear_matrix().astype(np.float64)
    offset = matrix[:, 0] * _CUBE_OFFSET + matrix[:, 1] * _CUBE_OFFSET
    return np.hstack([matrix, offset[:, None]]).astype(np.float32)


# --------------------------------------------------------------------------- numpy pieces (small)


def _lab_f_inverse(f: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The inverse of CIE Lab's f: f^3 above 6/29, its linear segment below (float32, any shape)."""
    knee = _F32(_KNEE)
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
    return _linear_matrix() @ xzy


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
    linear_lut, gray_lut = _luts(65536 if rgb.dtype == np.uint16 else 256)
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


def network_lightness(photo: Photo, shape: tuple[int, int]) -> torch.Tensor:
    """L in [0, 100] (h, w) of the photo (8 or 16 bit, gray or RGB) shrunk to `shape` (h, w) with
    Pillow's antialiased resize."""
    height, width = shape
    if photo.is_grayscale:  # one channel: a fraction of the memory and time of RGB
        small = _shrink(photo.rgb[..., 0], (width, height))
        rgb = np.repeat(small[..., None], 3, axis=2)
    elif photo.rgb.dtype == np.uint16:  # 16-bit RGB: channel by channel
        rgb = np.stack([_shrink(photo.rgb[..., channel], (width, height)) for channel in range(3)], axis=-1)
    else:
        rgb = _shrink(photo.rgb, (width, height))
    return torch.from_numpy(np.ascontiguousarray(lightness(rgb, gray=photo.is_grayscale)))


# ----------------------------------------------------------------------------- the guided filter


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window; windows are cut at the border (not zero-padded)."""
    return F.avg_pool2d(x[None], 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)[0]


def guided_slope(guide: torch.Tensor, ab: torch.Tensor, *, radius: int = GUIDED_RADIUS,
                 eps: float = GUIDED_EPS) -> torch.Tensor:
    """The slope A of the guided filter's local model ab ~ A * guide + B, at render size (He et al. 2013).

    `guide`: L/100 (h, w) in [0, 1]; `ab`: (2, h, w); returns A (2, h, w), box-averaged as in the
    filter. The join uses it anchored on the bilinear result: ab_full = up(ab) + up(A) * (L_full/100 -
    up(guide)), so where L has no detail the result is exactly bilinear, and where L has an edge the
    color follows it. (The plain fast guided filter, up(A) * L + up(B), also blurs ab by its box
    means: on scikit-image's color samples it lost to bilinear; see benchmarks/upsample_quality.py.)
    """
    guide = guide[None]
    mean_i = _box(guide, radius)
    mean_p = _box(ab, radius)
    cov = _box(guide * ab, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i * mean_i
    return _box(cov / (var + eps), radius)


def _small_planes(ab_small: torch.Tensor, l_small: torch.Tensor, *, upsample: str, saturation: float) -> torch.Tensor:
    """What the join upsamples, at render size, float32: (a, b) times `saturation`, and for guided
    also the guided filter's slope of each (same units) and the guide L/100 -> (2 or 5, h, w)."""
    if upsample not in UPSAMPLE_MODES:
        raise UsageError(f"unknown upsampling {upsample!r}", f"use one of {', '.join(UPSAMPLE_MODES)}")
    ab_small = ab_small.float() * saturation
    if upsample == "bilinear":
        return ab_small
    guide = l_small.float().to(ab_small.device)[None] / 100
    return torch.cat((ab_small, guided_slope(guide[0], ab_small), guide), dim=0)


# ------------------------------------------------------------------------------ the CPU join (OpenCV)


def _branchless_cube(f: np.ndarray) -> np.ndarray:
    """max(f, k)^3 + 3k^2 min(f, k) for (n, W) float32 `f` (overwritten): CIE f^-1 less a constant
    (_CUBE_OFFSET, added by the matrix)."""
    knee = _KNEE
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
    power = cv2.pow(cv2.max(flat, _SRGB_KNEE), 1 / 2.4)
    cv2.min(flat, _SRGB_KNEE, dst=flat)
    curve = cv2.scaleAdd(flat, 12.92 / 1.055, power, dst=power)
    curve *= _F32(1.055 * 65535)
    curve += _F32((-0.055 - 12.92 * _SRGB_KNEE) * 65535 + 0.5)
    out.reshape(out.shape[0], -1)[...] = curve  # truncating the value + 0.5: rounding


def _encode_exact(linear: np.ndarray, *, top: int) -> np.ndarray:
    """Linear sRGB (any shape) -> codes 0..`top` by the sRGB curve itself, rounded (numpy, for few pixels)."""
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear > _SRGB_KNEE, _F32(1.055) * np.power(linear, _F32(1 / 2.4)) - _F32(0.055),
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
    low, high = -_GAMUT_TOLERANCE_LOW[bit_depth], 1 + _GAMUT_TOLERANCE_HIGH
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
    da = np.ravel(a)[redo] * _F32(_TO_DA_DB[0])
    db = np.ravel(b)[redo] * _F32(_TO_DA_DB[1])
    low, high = -_GAMUT_TOLERANCE_LOW[8], 1 + _GAMUT_TOLERANCE_HIGH
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
    if bit_depth not in _GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    lightness_values = np.ascontiguousarray(lightness_values, dtype=np.float32)
    a, b = (np.ascontiguousarray(plane, dtype=np.float32) for plane in ab)
    out = np.empty((*lightness_values.shape, 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    if bit_depth == 8:
        _srgb8_band(lightness_values, a, b, out, steps=steps)
    else:
        fy = (lightness_values + _F32(16)) / _F32(116)
        _exact_band(fy, _lab_f_inverse(fy), a * _F32(_TO_DA_DB[0]), b * _F32(_TO_DA_DB[1]), out,
                    bit_depth=16, steps=steps)
    return out


def _band_lightness(rows: np.ndarray, gray: bool) -> np.ndarray:
    """CIE L in [0, 100] (n, W) float32 of a band of pixels (n, W, 3) uint8 or uint16 (`lightness`
    in OpenCV kernels)."""
    eight = rows.dtype == np.uint8
    linear_lut, gray_lut = _luts(256 if eight else 65536)
    if gray:  # L by table, from the code of each pixel
        codes = cv2.extractChannel(rows, 0) if rows.flags.c_contiguous else np.ascontiguousarray(rows[..., 0])
        return cv2.LUT(codes, gray_lut) if eight else np.take(gray_lut, codes)
    linear = cv2.LUT(rows, linear_lut) if eight else np.take(linear_lut, rows)
    values = _lab_f_cv(cv2.transform(linear, _Y_WEIGHTS[None, :]))
    values *= _F32(116)
    values -= _F32(16)
    return values


def join(photo: Photo, ab_small: torch.Tensor, l_small: torch.Tensor, *, upsample: str = "bilinear",
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
    if bit_depth not in _GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    small = _small_planes(ab_small.cpu(), l_small.cpu(), upsample=upsample, saturation=saturation).numpy()
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
            _exact_band(fy, _lab_f_inverse(fy), a * _F32(_TO_DA_DB[0]), b * _F32(_TO_DA_DB[1]),
                        result[start:stop], bit_depth=16)
    return result


# --------------------------------------------------------------------------- the device join (torch)


@functools.lru_cache(maxsize=8)
def _device_tables(device: torch.device, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(linear light of each code, L of each gray code, (X, Z, Y) -> linear sRGB matrix) on `device`."""
    linear, gray = _luts(levels)
    return (torch.from_numpy(linear).to(device), torch.from_numpy(gray).to(device),
            torch.from_numpy(_linear_matrix()).to(device))


def host_pixels(photo: Photo, *, pin: bool) -> torch.Tensor:
    """What of `photo` goes to the device: its codes, (H, W) for a gray photo, else (H, W, 3); uint8,
    or the bits of uint16 as int16 (the type every device copies). In page-locked memory with `pin`,
    so that the copy to a CUDA device runs asynchronously."""
    plane = photo.rgb[..., 0] if photo.is_grayscale else photo.rgb
    if plane.dtype == np.uint16:
        plane = plane.view(np.int16)
    host = torch.empty(plane.shape, dtype=torch.from_numpy(plane[:0]).dtype, pin_memory=pin)
    np.copyto(host.numpy(), plane)
    return host


def _codes(pixels: torch.Tensor) -> torch.Tensor:
    """Device pixels from `host_pixels` -> int64 codes 0..255 or 0..65535 (indices into the tables)."""
    codes = pixels.long()
    return codes & 0xFFFF if pixels.dtype == torch.int16 else codes


def _lab_f_t(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > LAB_EPSILON, t.clamp(min=LAB_EPSILON) ** (1 / 3), (LAB_KAPPA * t + 16) / 116)


def _lab_f_inverse_t(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _KNEE, f**3, (f - 4 / 29) * (3 * _KNEE**2))


def _lightness_t(pixels: torch.Tensor, *, levels: int) -> torch.Tensor:
    """L in [0, 100] (H, W) float32 of device pixels from `host_pixels`."""
    linear_lut, gray_lut, _ = _device_tables(pixels.device, levels)
    codes = _codes(pixels)
    if codes.ndim == 2:
        return gray_lut[codes]
    weights = torch.tensor(RGB_TO_XYZ[1], dtype=torch.float32, device=pixels.device)
    return 116 * _lab_f_t(linear_lut[codes] @ weights) - 16


def network_lightness_tensor(pixels: torch.Tensor, shape: tuple[int, int], *, levels: int) -> torch.Tensor:
    """L in [0, 100] (h, w) of device pixels from `host_pixels` shrunk to `shape` by torch's
    antialiased bicubic resize, on their device (close to, not the same as, `network_lightness`'s
    Pillow resize: the shrunk pixels are not rounded to codes)."""
    values = pixels.float() if pixels.dtype != torch.int16 else _codes(pixels).float()
    values = values / (levels - 1)
    planes = values[None, None] if values.ndim == 2 else values.permute(2, 0, 1)[None]
    small = F.interpolate(planes, size=shape, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)
    linear = torch.where(small > 0.04045, ((small + 0.055) / 1.055) ** 2.4, small / 12.92)
    weights = torch.tensor(RGB_TO_XYZ[1], dtype=torch.float32, device=pixels.device)
    y = linear[0] if linear.shape[0] == 1 else torch.einsum("c,chw->hw", weights, linear)
    return 116 * _lab_f_t(y) - 16


def _linear_t(fy: torch.Tensor, y: torch.Tensor, da: torch.Tensor, db: torch.Tensor,
              matrix: torch.Tensor) -> torch.Tensor:
    xzy = torch.stack((_lab_f_inverse_t(fy + da), _lab_f_inverse_t(fy + db), y))
    return torch.einsum("ij,j...->i...", matrix, xzy)


def _outside_t(linear: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return ((linear < low) | (linear > high)).any(dim=0)


def join_tensor(pixels: torch.Tensor, ab_small: torch.Tensor, l_small: torch.Tensor, *, levels: int,
                upsample: str = "bilinear", saturation: float = 1.0, bit_depth: int = 8,
                steps: int = GAMUT_STEPS) -> torch.Tensor:
    """`join` in torch on the device of `pixels` (from `host_pixels`; `levels` 256 or 65536) ->
    (H, W, 3) on that device: uint8 for `bit_depth` 8; for 16 the bits of uint16 as int16.

    The same math as `join` in float32 (the exact sRGB curve, no tables), in bands of
    `DEVICE_BAND_PIXELS`, so device memory stays bounded for any photo size.
    """
    if bit_depth not in _GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    device = pixels.device
    height, width = pixels.shape[:2]
    small = _small_planes(ab_small.to(device), l_small.to(device), upsample=upsample, saturation=saturation)
    small_h = small.shape[1]
    # Columns by torch's interpolate (rows unchanged: exact), rows below by the same taps, per band.
    wide = F.interpolate(small[None], size=(small_h, width), mode="bilinear", align_corners=False)[0]
    position = ((torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (small_h / height) - 0.5).clamp(min=0)
    row_low = position.floor().long().clamp(max=small_h - 1)
    row_high = (row_low + 1).clamp(max=small_h - 1)
    row_frac = (position - row_low)[:, None]
    matrix = _device_tables(device, levels)[2]
    low, high = -_GAMUT_TOLERANCE_LOW[bit_depth], 1 + _GAMUT_TOLERANCE_HIGH
    top = 65535 if bit_depth == 16 else 255
    result = torch.empty((height, width, 3), dtype=torch.int16 if bit_depth == 16 else torch.uint8, device=device)
    band = max(1, DEVICE_BAND_PIXELS // width)
    for start in range(0, height, band):
        stop = min(height, start + band)
        lightness_values = _lightness_t(pixels[start:stop], levels=levels)
        upper = wide[:, row_low[start:stop]]
        up = upper + (wide[:, row_high[start:stop]] - upper) * row_frac[start:stop]
        a, b = up[0], up[1]
        if upsample == "guided":
            offset = lightness_values / 100 - up[4]
            a, b = a + up[2] * offset, b + up[3] * offset
        fy = (lightness_values + 16) / 116
        y, da, db = _lab_f_inverse_t(fy), a * _TO_DA_DB[0], b * _TO_DA_DB[1]
        linear = _linear_t(fy, y, da, db, matrix)
        outside = _outside_t(linear, low, high)
        if bool(outside.any()):
            fy_o, y_o, da_o, db_o = fy[outside], y[outside], da[outside], db[outside]
            lower, upper_s = torch.zeros_like(fy_o), torch.ones_like(fy_o)
            for _ in range(steps):
                middle = (lower + upper_s) * 0.5
                inside = ~_outside_t(_linear_t(fy_o, y_o, da_o * middle, db_o * middle, matrix), low, high)
                lower = torch.where(inside, middle, lower)
                upper_s = torch.where(inside, upper_s, middle)
            linear[:, outside] = _linear_t(fy_o, y_o, da_o * lower, db_o * lower, matrix)
        linear = linear.clamp(0, 1)
        srgb = torch.where(linear > _SRGB_KNEE, 1.055 * linear.clamp(min=_SRGB_KNEE) ** (1 / 2.4) - 0.055,
                           12.92 * linear)
        codes = (srgb * top + 0.5).floor().to(torch.int32).permute(1, 2, 0)
        result[start:stop] = codes.to(result.dtype)  # int32 -> int16 keeps the low 16 bits: uint16's
    return result


def host_result(result: torch.Tensor) -> np.ndarray:
    """A device result of `join_tensor` -> (H, W, 3) uint8 or uint16 numpy on the CPU (waits for it)."""
    host = result.cpu().numpy()
    return host.view(np.uint16) if host.dtype == np.int16 else host


def download(result: torch.Tensor) -> Callable[[], np.ndarray]:
    """Start copying a device result of `join_tensor` to the CPU (into page-locked memory, without
    waiting, on CUDA); the function returned waits for the copy and gives (H, W, 3) uint8 or uint16."""
    if result.device.type != "cuda":
        array = host_result(result)
        return lambda: array
    host = torch.empty(result.shape, dtype=result.dtype, pin_memory=True)
    host.copy_(result, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait() -> np.ndarray:
        copied.synchronize()
        array = host.numpy()
        return array.view(np.uint16) if array.dtype == np.int16 else array

    return wait


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own threads per call set to `count` inside the block (restored after)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
