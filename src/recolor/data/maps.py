"""PNG pictures of N x N maps over the ab plane (the histogram, the weights), numpy + Pillow only.

The a axis runs left to right, b bottom to top, both over the bins' range. Values are colored
with a viridis-like ramp and a color bar; bins no sRGB color reaches are left white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recolor.io.atomic import atomic_write

# Viridis sampled at 9 points; linear interpolation between them is close enough for a figure.
_RAMP = np.array([
    (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
    (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
], dtype=np.float64)
_OUTSIDE = (255, 255, 255)
_EMPTY = (40, 40, 40)
_TEXT = (0, 0, 0)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (..., 3) on the viridis-like ramp."""
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    t = (position - low)[..., None]
    return np.round(_RAMP[low] * (1 - t) + _RAMP[low + 1] * t).astype(np.uint8)


def render_map(
    values: np.ndarray,
    *,
    edges: np.ndarray,
    title: str,
    mask: np.ndarray | None = None,
    log: bool = False,
    cell: int = 10,
) -> Image.Image:
    """An RGB picture of `values` (N, N) indexed [a bin, b bin].

    With `log`, log10 of the values is shown and bins with 0 are drawn dark gray ("none seen").
    Bins outside `mask` are white.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    inside = np.ones_like(values, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    empty = inside & (values <= 0) if log else np.zeros_like(inside)
    shown = np.log10(np.where(values > 0, values, 1.0)) if log else values
    valid = inside & ~empty
    low, high = (shown[valid].min(), shown[valid].max()) if valid.any() else (0.0, 1.0)
    span = high - low if high > low else 1.0
    pixels = colormap((shown - low) / span)
    pixels[~inside] = _OUTSIDE
    pixels[empty] = _EMPTY
    # [a, b] -> image rows top to bottom = b high to low, columns = a low to high.
    grid = np.repeat(np.repeat(pixels.transpose(1, 0, 2)[::-1], cell, axis=0), cell, axis=1)

    side = n * cell
    left, top, bottom, right = 56, 26, 34, 90
    canvas = Image.new("RGB", (left + side + right, top + side + bottom), (255, 255, 255))
    canvas.paste(Image.fromarray(np.ascontiguousarray(grid)), (left, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((left, 6), title, fill=_TEXT, font=font)
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=_TEXT)
    lo, hi = float(edges[0]), float(edges[-1])
    for tick in range(-100, 101, 50):
        x = left + round((tick - lo) / (hi - lo) * side)
        y = top + side - round((tick - lo) / (hi - lo) * side)
        draw.line((x, top + side, x, top + side + 4), fill=_TEXT)
        draw.text((x - 8, top + side + 6), str(tick), fill=_TEXT, font=font)
        draw.line((left - 5, y, left - 1, y), fill=_TEXT)
        draw.text((left - 30, y - 6), str(tick), fill=_TEXT, font=font)
    draw.text((left + side // 2 - 4, top + side + 20), "a", fill=_TEXT, font=font)
    draw.text((4, top + side // 2 - 6), "b", fill=_TEXT, font=font)

    bar_left = left + side + 14
    ramp = colormap(np.linspace(1, 0, side))[:, None, :].repeat(14, axis=1)
    canvas.paste(Image.fromarray(ramp), (bar_left, top))
    draw.rectangle((bar_left - 1, top - 1, bar_left + 14, top + side), outline=_TEXT)
    label = (lambda v: f"{10 ** v:.3g}") if log else (lambda v: f"{v:.2f}")
    draw.text((bar_left + 18, top - 2), label(high), fill=_TEXT, font=font)
    draw.text((bar_left + 18, top + side - 10), label(low), fill=_TEXT, font=font)
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    """Write `image` as PNG atomically."""
    atomic_write(path, lambda fp: image.save(fp, format="PNG", optimize=True))
    return path
