"""The numpy join of recolor 0.1 (`recolor.apply.pipeline` before the OpenCV join), frozen as a test oracle.

Copied unchanged from src/recolor/colorize.py (its pixel-math section) at the commit before
recolor.apply.join replaced it, so that tests can compare the new join with what apply wrote before.
Not part of the package; nothing in src/ imports it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from recolor.colorspace import D65_WHITE, LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ
from recolor.io.photo import Photo

BAND_PIXELS = 1 << 16
GUIDED_RADIUS = 1
GUIDED_EPS = 1e-3
_Y_WEIGHTS = np.array(RGB_TO_XYZ[1], dtype=np.float32)  # sRGB linear -> Y
# Linear light -> 8-bit sRGB by table: 2**16 entries keep every result within one level of the exact
# curve (the steepest part, near black, moves 0.05 of a level per entry), at a fraction of pow()'s cost.
# The 8-bit join computes linear light times 65535 (folded into the Lab -> RGB matrix), so that
# clipping and truncating it gives the index: entry i holds the code of linear (i + 0.5) / 65535.
# 16-bit results are encoded with the curve itself: float32 pow, as fast here as a 2**20-entry table
# and closer (0.51 of a level from the exact curve at worst, against the table's 0.9).
_ENCODE_STEPS = 1 << 16
# Linear values this far above 1 still count as inside the gamut: with these matrices Lab white
# (100, 0, 0) itself comes out at linear (1.000007, 0.99999, 1.00008). Clipping that much moves L by
# at most 0.004.
_GAMUT_TOLERANCE_HIGH = 1e-4
# ... and this far below 0, by bit depth: about 0.3 of an 8-bit level near black, and 0.8 of a
# 16-bit level (clipping 1e-4 there would move L by up to 0.07).
_GAMUT_TOLERANCE_LOW = {8: 1e-4, 16: 1e-6}
_F32 = np.float32


@functools.lru_cache(maxsize=2)
def _luts(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(linear light, CIE L of a gray pixel) of each code 0 .. levels-1, as float32 tables."""
    codes = np.arange(levels, dtype=np.float64) / (levels - 1)
    linear = np.where(codes > 0.04045, ((codes + 0.055) / 1.055) ** 2.4, codes / 12.92)
    return linear.astype(np.float32), (116 * _lab_f(linear) - 16).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _encode_lut() -> np.ndarray:
    linear = np.minimum((np.arange(_ENCODE_STEPS, dtype=np.float64) + 0.5) / (_ENCODE_STEPS - 1), 1.0)
    srgb = np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return np.round(srgb * 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _linear_matrix(scale: float) -> np.ndarray:
    """(X/Xn, Z/Zn, Y/Yn) -> linear sRGB times `scale`: the white point folded in, the columns in
    the order join's buffers hold them."""
    xyz_to_linear = np.linalg.inv(np.array(RGB_TO_XYZ, dtype=np.float64)) * np.array(D65_WHITE)[None, :]
    return np.ascontiguousarray(xyz_to_linear[:, [0, 2, 1]] * scale, dtype=np.float32)


def _encode16(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] (float32, any shape) -> 16-bit sRGB codes (0-65535), rounded."""
    knee = _F32(0.0031308)
    curve = np.power(np.maximum(linear, knee), _F32(1 / 2.4))
    curve *= _F32(1.055)
    curve -= _F32(0.055)
    encoded = np.where(linear > knee, curve, linear * _F32(12.92))
    encoded *= _F32(65535)
    encoded += _F32(0.5)
    return encoded.astype(np.uint16)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > LAB_EPSILON, np.cbrt(t), (LAB_KAPPA * t + 16) / 116).astype(t.dtype, copy=False)


def _lab_f_inverse(f: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The inverse of CIE Lab's f: f^3 above 6/29, its linear segment below (float32, any shape).
    `out` may be `f` itself."""
    # The cube everywhere, then the linear segment only where it applies (dark colors, usually
    # few pixels, found by one reduction): np.where over both branches costs eight times as much.
    knee = _F32(6 / 29)
    dark = np.flatnonzero(f <= knee) if f.size and f.min() <= knee else None
    if dark is not None:
        segment = np.ravel(f)[dark] * _F32(116 / LAB_KAPPA) - _F32(16 / LAB_KAPPA)
    out = np.multiply(f * f, f, out=out)
    if dark is not None:
        np.put(out, dark, segment)
    return out


@functools.lru_cache(maxsize=2)
def _gray_luts(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(fy, Y) of a gray pixel of each code 0 .. levels-1: fy = (L + 16) / 116 and Y = f^-1(fy),
    computed exactly as `lab_to_srgb` computes them from L, so a gray photo's join needs no
    per-pixel Lab math for L."""
    fy = (_luts(levels)[1] + _F32(16)) / _F32(116)
    return fy, _lab_f_inverse(fy)


def lightness(rgb: np.ndarray, *, gray: bool = False) -> np.ndarray:
    """CIE L in [0, 100] of sRGB pixels (H, W, 3) uint8 or uint16, as float32 (H, W).

    The same L as `recolor.color.rgb_to_lab`, through lookup tables of the sRGB curve; with `gray`
    (R = G = B) the whole L is one table lookup.
    """
    linear_lut, gray_lut = _luts(65536 if rgb.dtype == np.uint16 else 256)
    if gray:
        return np.take(gray_lut, rgb[..., 0])
    return 116 * _lab_f(np.take(linear_lut, rgb) @ _Y_WEIGHTS) - _F32(16)


def _bilinear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights that upsample `source` samples to `target` as F.interpolate(bilinear) does."""
    position = np.maximum((np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5, 0)
    low = np.minimum(np.floor(position).astype(np.int64), source - 1)
    high = np.minimum(low + 1, source - 1)
    return low, high, (position - low).astype(np.float32)


def _upsample_band(small: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    """Bilinear upsampling of `small` (C, h, w) to a band of rows given by their taps -> (C, rows, W)."""
    row_low, row_high, row_frac = rows
    col_low, col_high, col_frac = cols
    # Columns first, on just the render-size rows this band reads (a band of 50 full-size rows
    # reads about 11 at 1 MP), then rows by whole-row copies: per full-size pixel that is 3
    # contiguous passes instead of 2 element-wise gathers, and 1.6 times as fast.
    first, last = row_low[0], row_high[-1] + 1  # the taps never decrease
    part = small[:, first:last]
    wide = part[:, :, col_low]
    wide += (part[:, :, col_high] - wide) * col_frac
    top = wide[:, row_low - first]
    band = wide[:, row_high - first]
    band -= top
    band *= row_frac[None, :, None]
    band += top
    return band


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window; windows are cut at the border (not zero-padded)."""
    return F.avg_pool2d(x[None], 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)[0]


def guided_slope(guide: torch.Tensor, ab: torch.Tensor, *, radius: int = GUIDED_RADIUS,
                 eps: float = GUIDED_EPS) -> torch.Tensor:
    """The slope A of the guided filter's local model ab ~ A * guide + B, at render size (He et al. 2013).

    `guide`: L/100 (h, w) in [0, 1]; `ab`: (2, h, w); returns A (2, h, w), box-averaged as in the
    filter. `join` uses it anchored on the bilinear result: ab_full = up(ab) + up(A) * (L_full/100 -
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


# Lab reaches the math below as fy = (L + 16) / 116, Y/Yn = f^-1(fy), da = a / 500 and db = -b / 200:
# X/Xn = f^-1(fy + da) and Z/Zn = f^-1(fy + db). A gray photo's fy and Y come from tables by code,
# and join scales ab into da and db at render size, before upsampling (which is linear).
_TO_DA_DB = (1 / 500, -1 / 200)


def _lab_to_linear(fy: np.ndarray, y: np.ndarray, da: np.ndarray, db: np.ndarray, *, scale: float = 1.0,
                   xzy: np.ndarray | None = None) -> np.ndarray:
    """Lab (fy, Y, da, db: all one shape) -> linear sRGB times `scale`, (3, *shape) float32, unclipped.

    `xzy`: a C-contiguous (3, *shape) float32 buffer to work in, whose [2] already holds Y.
    """
    if xzy is None:
        xzy = np.empty((3, *fy.shape), dtype=np.float32)
        xzy[2] = y
    np.add(fy, da, out=xzy[0])
    np.add(fy, db, out=xzy[1])
    _lab_f_inverse(xzy[:2], out=xzy[:2])
    # Element-wise products and sums rather than a (3, 3) @ (3, N) matmul (3 times as fast): BLAS
    # rounds differently by position and length, and a pixel must not depend on its band.
    matrix = _linear_matrix(scale)
    linear = np.empty_like(xzy)
    term = np.empty_like(xzy[0])
    for channel in range(3):
        np.multiply(xzy[0], matrix[channel, 0], out=linear[channel])
        for column in (1, 2):
            linear[channel] += np.multiply(xzy[column], matrix[channel, column], out=term)
    return linear


def _outside(linear: np.ndarray, low: float, high: float) -> np.ndarray:
    return ((linear < low) | (linear > high)).any(axis=0)


def lab_to_srgb(lightness_values: np.ndarray, ab: np.ndarray, *, bit_depth: int = 8, steps: int = 7) -> np.ndarray:
    """L (h, w) in [0, 100] and ab (2, h, w) -> sRGB (h, w, 3): uint8 (0-255) with `bit_depth` 8,
    within one level of exact; uint16 (0-65535) with `bit_depth` 16, within 0.51 of a level.

    Colors outside the sRGB gamut are desaturated at constant L and hue rather than clipped per
    channel (which shifts both): a bisection over the chroma scale s in [0, 1] (s = 0, gray, is
    always inside) for just the pixels that need it, usually few.
    """
    if bit_depth not in _GAMUT_TOLERANCE_LOW:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    fy = (lightness_values + _F32(16)) / _F32(116)
    return _lab_to_srgb(fy, _lab_f_inverse(fy), ab[0] * _F32(_TO_DA_DB[0]), ab[1] * _F32(_TO_DA_DB[1]),
                        bit_depth=bit_depth, steps=steps)


def _lab_to_srgb(fy: np.ndarray, y: np.ndarray, da: np.ndarray, db: np.ndarray, *, bit_depth: int,
                 steps: int = 7, planar: bool = False, xzy: np.ndarray | None = None) -> np.ndarray:
    """`lab_to_srgb` of Lab as fy, Y, da, db (see `_lab_to_linear`); `planar`: channels first,
    (3, *shape)."""
    # 8 bits: linear light times 65535 straight from the matrix, an index into the table once clipped.
    scale = _ENCODE_STEPS - 1 if bit_depth == 8 else 1
    low_limit = -_GAMUT_TOLERANCE_LOW[bit_depth] * scale
    high_limit = (1 + _GAMUT_TOLERANCE_HIGH) * scale
    linear = _lab_to_linear(fy, y, da, db, scale=scale, xzy=xzy)
    # Two reductions tell whether any pixel is outside at all; only then is the mask built.
    if linear.min() < low_limit or linear.max() > high_limit:
        flat = linear.reshape(3, -1)
        outside = np.flatnonzero(_outside(flat, low_limit, high_limit))
        fy_out, y_out, da_out, db_out = (np.ravel(v)[outside] for v in (fy, y, da, db))
        low, high = np.zeros_like(fy_out), np.ones_like(fy_out)
        for _ in range(steps):
            middle = (low + high) * _F32(0.5)
            trial = _lab_to_linear(fy_out, y_out, da_out * middle, db_out * middle, scale=scale)
            inside = ~_outside(trial, low_limit, high_limit)
            low = np.where(inside, middle, low)
            high = np.where(inside, high, middle)
        flat[:, outside] = _lab_to_linear(fy_out, y_out, da_out * low, db_out * low, scale=scale)
    np.clip(linear, 0, scale, out=linear)
    if bit_depth == 16:
        encoded = _encode16(linear)
    else:
        # intp indices: np.take converts any other index type in an extra pass (int32 took 3x as long).
        encoded = np.take(_encode_lut(), linear.astype(np.intp))
    return encoded if planar else np.moveaxis(encoded, 0, -1)


def join(photo: Photo, ab_small: torch.Tensor, l_small: torch.Tensor, *, upsample: str = "bilinear",
         saturation: float = 1.0, bit_depth: int | None = None) -> np.ndarray:
    """The full-resolution result (H, W, 3): the photo's own L with ab upsampled from render size.

    `ab_small`: (2, h, w) in natural units (about -110..110); `l_small`: (h, w) L in [0, 100], the
    network's input (the guide of the guided filter). `saturation` multiplies the chroma (0: gray).
    The result is uint16 (0-65535) when `bit_depth` is 16, uint8 when 8; None: the photo's own
    depth. Works in bands of rows, so the float temporaries stay small whatever the photo's size.
    """
    if upsample not in ("bilinear", "guided"):
        raise ValueError(upsample)
    bit_depth = photo.bit_depth if bit_depth is None else bit_depth
    height, width = photo.rgb.shape[:2]
    small_h, small_w = ab_small.shape[-2:]
    ab_small = ab_small.float().cpu() * saturation
    to_da_db = torch.tensor(_TO_DA_DB).view(2, 1, 1)  # the slope scales with ab
    if upsample == "guided":
        guide = l_small.float().cpu()[None] / 100
        slope = guided_slope(guide[0], ab_small)
        small = torch.cat((ab_small * to_da_db, slope * to_da_db, guide), dim=0)  # upsampled together: (5, h, w)
    else:
        small = ab_small * to_da_db
    small = np.ascontiguousarray(small.numpy())  # row gathers below want whole contiguous rows
    cols = _bilinear_taps(small_w, width)
    all_rows = _bilinear_taps(small_h, height)
    band = max(1, BAND_PIXELS // width)
    result = np.empty((height, width, 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    levels = 65536 if photo.rgb.dtype == np.uint16 else 256
    for start in range(0, height, band):
        stop = min(height, start + band)
        rows = photo.rgb[start:stop]
        xzy = np.empty((3, stop - start, width), dtype=np.float32)  # Y goes straight into [2]
        if photo.is_grayscale:  # fy and Y by table, from the code of each pixel
            codes = rows[..., 0].astype(np.intp)
            fy_lut, y_lut = _gray_luts(levels)
            fy = np.take(fy_lut, codes)
            np.take(y_lut, codes, out=xzy[2])
            band_l = np.take(_luts(levels)[1], codes) if upsample == "guided" else None
        else:
            band_l = lightness(rows)
            fy = (band_l + _F32(16)) / _F32(116)
            _lab_f_inverse(fy, out=xzy[2])
        upsampled = _upsample_band(small, tuple(t[start:stop] for t in all_rows), cols)
        if upsample == "guided":
            band_d = upsampled[:2] + upsampled[2:4] * (band_l * _F32(0.01) - upsampled[4])[None]
        else:
            band_d = upsampled
        encoded = _lab_to_srgb(fy, xzy[2], band_d[0], band_d[1], bit_depth=bit_depth, planar=True, xzy=xzy)
        for channel in range(3):  # channel by channel: 3.5 times as fast as one interleaving copy
            result[start:stop, :, channel] = encoded[channel]
    return result

