"""Files the apply, models and hub tests build: a tiny model folder and small images of every kind."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """A width-8 U-Net saved as config.json + model.safetensors (random weights, fixed seed)."""
    import torch

    from recolor.nn import UNetGenerator
    from recolor.nn.pretrained import save_generator

    torch.manual_seed(seed)
    generator = UNetGenerator(width=8)
    # Random BatchNorm statistics would make the output nearly constant; bias the head so the
    # colors are clearly not gray, which the tests check.
    with torch.no_grad():
        generator.head.bias.copy_(torch.tensor([0.3, -0.2]))
    return save_generator(generator, folder)


def gray_image(width: int = 48, height: int = 32, *, seed: int = 0) -> np.ndarray:
    """A gray (H, W) uint8 image with edges and texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = 60 + 120 * (x > width // 2) + rng.integers(0, 40, size=(height, width))
    return image.clip(0, 255).astype(np.uint8)


def save_gray(path: Path, width: int = 48, height: int = 32, *, seed: int = 0, **save_options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray_image(width, height, seed=seed)).save(path, **save_options)
    return path


def truncated_jpeg(path: Path) -> Path:
    save_gray(path, 64, 64, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bomb_png(path: Path, *, side: int = 100_000) -> Path:
    """A valid, tiny PNG header that claims side x side pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path
