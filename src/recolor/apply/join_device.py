"""The full-resolution join in torch on the network's device (`--device cuda`): the math of
`recolor.apply.join` in float32 (the exact sRGB curve, no tables), everything after decoding on the
GPU, the photo's pixels copied there from page-locked memory and the result copied back without
waiting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from recolor.apply.join import (
    GAMUT_TOLERANCE_HIGH,
    GAMUT_TOLERANCE_LOW,
    LAB_KNEE,
    SRGB_KNEE,
    TO_DA_DB,
    GAMUT_STEPS,
    GUIDED_EPS,
    GUIDED_RADIUS,
    UPSAMPLE_MODES,
    linear_matrix,
    code_tables,
)
from recolor.colorspace import LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ
from recolor.errors import UsageError
from recolor.io.photo import Photo

# Rows are joined in bands of this many pixels: device memory stays bounded for any photo size.
DEVICE_BAND_PIXELS = 1 << 22


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


@functools.lru_cache(maxsize=8)
def _device_tables(device: torch.device, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(linear light of each code, L of each gray code, (X, Z, Y) -> linear sRGB matrix) on `device`."""
    linear, gray = code_tables(levels)
    return (torch.from_numpy(linear).to(device), torch.from_numpy(gray).to(device),
            torch.from_numpy(linear_matrix()).to(device))


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
    return torch.where(f > LAB_KNEE, f**3, (f - 4 / 29) * (3 * LAB_KNEE**2))


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
    if bit_depth not in GAMUT_TOLERANCE_LOW:
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
    low, high = -GAMUT_TOLERANCE_LOW[bit_depth], 1 + GAMUT_TOLERANCE_HIGH
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
        y, da, db = _lab_f_inverse_t(fy), a * TO_DA_DB[0], b * TO_DA_DB[1]
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
        srgb = torch.where(linear > SRGB_KNEE, 1.055 * linear.clamp(min=SRGB_KNEE) ** (1 / 2.4) - 0.055,
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
