"""Small prepared data folders for the training tests, made by the real `recolor prepare`.

The images carry colors that are learnable from texture alone: stripes are red, checkers are
blue, on random gray levels. Each image has one texture on its left half and the other on its
right half (which is which is random), so the network must look at texture, not position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console

from recolor.color import lab_to_rgb

# ab (natural units) of each texture's color.
STRIPES_AB = (45.0, 30.0)   # red
CHECKERS_AB = (15.0, -45.0)  # blue


def _texture(kind: str, size: int, phase: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    if kind == "stripes":
        return (((x + phase) // 2) % 2).astype(np.float32)
    return ((((x + phase) // 2) + (y // 2)) % 2).astype(np.float32)


def texture_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8 sRGB: stripes (red) on one half, checkers (blue) on the other."""
    half = size // 2
    kinds = ["stripes", "checkers"] if rng.random() < 0.5 else ["checkers", "stripes"]
    lab = np.zeros((3, size, size), np.float32)
    for side, kind in enumerate(kinds):
        columns = slice(side * half, (side + 1) * half)
        base = rng.uniform(40, 65)
        texture = _texture(kind, size, int(rng.integers(0, 4)))[:, columns]
        lab[0, :, columns] = base + 14 * (texture - 0.5)
        a, b = STRIPES_AB if kind == "stripes" else CHECKERS_AB
        lab[1, :, columns] = a
        lab[2, :, columns] = b
    rgb = lab_to_rgb(torch.from_numpy(lab)[None])[0]
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def make_prepared(root: Path, *, train: int = 64, val: int = 16, size: int = 32, seed: int = 0,
                  gray_rows: int = 0) -> Path:
    """A folder of texture PNGs (train/ and val/) prepared into root/data; returns the data folder.

    `gray_rows`: that many top rows of each image made neutral (R = G = B), as a white shirt is.
    """
    from recolor.data.prepare import prepare

    rng = np.random.default_rng(seed)
    source = root / "photos"
    for split, count in (("train", train), ("val", val)):
        folder = source / split
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = texture_image(rng, size)
            image[:gray_rows] = image[:gray_rows].mean(axis=2, keepdims=True).round().astype(np.uint8)
            Image.fromarray(image).save(folder / f"{index:04d}.png")
    data = root / "data"
    prepare(str(source), data, size=size, workers=0, console=Console(quiet=True))
    return data
