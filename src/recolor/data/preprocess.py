"""One source photo -> one square uint8 sRGB crop of side `size`, or the reason it is skipped.

The crop: the photo is decoded by `recolor.io.read.read_image` (EXIF orientation applied, ICC
profile converted to sRGB, 16 bits rounded to 8, alpha dropped), its short side is resized to
`size` and the center square is kept. Both happen in one Pillow `resize` with a source box, so
the filter (bicubic, whose support widens with the scale, i.e. antialiased when shrinking) sees
the exact center square. No margin is kept for random crops: the training loop flips, and a
fixed crop keeps the store at `size`^2 pixels per photo.

Skipped, with a one-line reason each: unreadable or truncated files (the `ImageReadError`'s
message), photos whose short side is under `size / 2` (they would be enlarged more than 2x,
which teaches the network blur), grayscale files (`Photo.is_grayscale`: a gray mode, or R, G and
B within one level everywhere) and nearly gray ones (99 % of the crop's pixels with R, G and B
within `NEAR_GRAY_SPREAD` levels: a desaturated scan or a gray photo saved with JPEG chroma
noise, which would teach "no color").

This module imports no torch: it runs in the worker processes of `recolor prepare`.
"""

from __future__ import annotations

import signal

import numpy as np
from PIL import Image

from recolor.errors import ImageReadError
from recolor.io.read import read_image

# A crop whose 99th percentile of max(R, G, B) - min(R, G, B) is at most this (0-255 levels)
# carries no color worth learning from.
NEAR_GRAY_SPREAD = 6
_NEAR_GRAY_PERCENTILE = 99


class Skip(Exception):
    """A source photo that is left out of the store; the message is the reason shown."""


def min_side(size: int) -> int:
    """The shortest source side accepted for crops of side `size`: at most 2x enlargement."""
    return (size + 1) // 2


def square_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: short side resized to `size`, center square."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    left = (width - side) / 2
    top = (height - side) / 2
    image = Image.fromarray(np.ascontiguousarray(rgb))
    # reducing_gap: for photos many times `size`, shrink first by an integer factor (fast box
    # filter) and finish with bicubic; the result differs from a pure bicubic by under one level.
    out = image.resize((size, size), Image.Resampling.BICUBIC,
                       box=(left, top, left + side, top + side), reducing_gap=3.0)
    return np.asarray(out)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)


def color_spread(crop: np.ndarray) -> float:
    """The 99th percentile over pixels of max(R, G, B) - min(R, G, B), in 0-255 levels."""
    spread = crop.max(axis=2).astype(np.int16) - crop.min(axis=2)
    return float(np.percentile(spread, _NEAR_GRAY_PERCENTILE))


def load_crop(path, *, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 sRGB training crop of one file; raises `Skip` with the reason."""
    try:
        photo = read_image(path)
    except ImageReadError as error:
        # The cause starts with the path, which the skip report already shows.
        cause = error.cause.removeprefix(f"{path}: ")
        raise Skip(f"unreadable: {cause}") from None
    width, height = photo.size
    if min(width, height) < min_side(size):
        raise Skip(f"too small: {width} x {height}, short side under {min_side(size)} px")
    if photo.is_grayscale:
        raise Skip("grayscale")
    crop = square_crop(_to_uint8(photo.rgb), size)
    spread = color_spread(crop)
    if spread <= NEAR_GRAY_SPREAD:
        raise Skip(f"nearly grayscale: color spread {spread:.0f} <= {NEAR_GRAY_SPREAD} levels")
    return crop


# ------------------------------------------------------------------------- worker-process side

_open_stores: dict[str, np.ndarray] = {}


def _store(images_path: str) -> np.ndarray:
    # Each worker maps the store once and writes its rows in place: no pixels travel back through
    # a pipe, and rows are on disk (in the page cache) as soon as they are written.
    if images_path not in _open_stores:
        _open_stores[images_path] = np.load(images_path, mmap_mode="r+")
    return _open_stores[images_path]


def process_chunk(images_path: str, items: list[tuple[int, str]], size: int) -> list[tuple[int, str | None]]:
    """Crop each (row, source path) into row `row` of the .npy store; (row, skip reason or None)."""
    store = _store(images_path)
    results: list[tuple[int, str | None]] = []
    for row, source in items:
        try:
            store[row] = load_crop(source, size=size)
        except Skip as skip:
            results.append((row, str(skip)))
        else:
            results.append((row, None))
    store.flush()
    return results


def process_chunk_args(args: tuple[str, list[tuple[int, str]], int]) -> list[tuple[int, str | None]]:
    """`process_chunk` for Pool.imap_unordered, which passes one argument."""
    return process_chunk(*args)


def ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; the main process handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def close_stores() -> None:
    """Drop the maps this process holds (so the files can be renamed or removed on Windows)."""
    _open_stores.clear()
