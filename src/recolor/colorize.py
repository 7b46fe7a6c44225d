"""The apply engine: colorize image files at full resolution, many at a time, with bounded memory.

For each photo:

1. The photo is shrunk (Pillow, antialiased) so its long side is the render size and both sides
   are multiples of 32 (the U-Net's stride), keeping the aspect ratio to within 16 pixels at
   render size; the network sees the L of that small image.
2. The network's ab (at render size) is upsampled to the photo's full size, bilinearly or anchored
   on a guided filter's slope so that it follows the edges of L, and joined with the L of the
   original pixels, so every pixel of detail is the input's own. Inputs already in color are
   recolored from their L alone.
3. The saturation gain multiplies the chroma; colors that end up outside sRGB are pulled back
   towards gray at constant L and hue (not clipped per channel, which would shift both).

A 16-bit photo (`Photo.bit_depth` 16) written as PNG or TIFF gets a 16-bit result, encoded to
sRGB exactly (no 8-bit table in between), so its L is the input's to 16-bit precision; other
outputs are computed at 8 bits. Steps 2 and 3 run in numpy on bands of rows (about 65,000 pixels
each), so a photo needs little beyond its own pixels and the output's. Decoding runs in a thread
pool ahead of the network and encoding (with the join) in another one behind it; photos are
batched across files by render shape, and the pixels held at once are capped. On the CPU the
network runs from an inference copy of the generator (BatchNorms folded, channels_last, bf16 where
the CPU has native bf16: see PRECISIONS) with torch's threads limited to the cores the I/O threads
leave. docs/performance.md has the figures.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import glob
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from recolor.color import AB_SCALE, D65_WHITE, LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ
from recolor.errors import ImageWriteError, Interrupted, RecolorError, UsageError
from recolor.imageio import DEFAULT_MAX_PIXELS, SUPPORTED_SUFFIXES, Photo, read_image, read_image_size, write_image

# The generator's input must be a multiple of this (2 ** (depth + 1) at the default depth 4).
RENDER_MULTIPLE = 32
# Rows are joined in bands of about this many pixels: big enough for vector code to pay off, small
# enough that the float temporaries stay in the CPU's cache (about a megabyte each).
BAND_PIXELS = 1 << 16
# Photos held in memory at once (decoded, waiting for the network or for encoding), in pixels;
# at least one photo is always admitted, however large.
DEFAULT_PIXEL_BUDGET = 64_000_000
FORMAT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
# The output formats that recolor.imageio.write_image writes at 16 bits; JPEG, WebP and BMP hold 8.
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_SIXTEEN_BIT_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
OUTPUT_FORMATS = ("same", *FORMAT_SUFFIXES)
UPSAMPLE_MODES = ("bilinear", "guided")
# The network's number format: auto is bf16 on CPUs that compute it natively (AMX or AVX-512 BF16:
# 3 to 4 times as fast as fp32, outputs within a fraction of one ab unit; see
# benchmarks/apply_stages.py --precision-check), fp16 on CUDA, fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
COMPARE_FOLDER = "compare"
# The guided filter's slope, fitted at render size: window radius in render pixels, and the
# regulariser on the variance of L/100 (smaller: follows L edges more closely, and L's grain too).
# Chosen on scikit-image's color samples with benchmarks/upsample_quality.py.
GUIDED_RADIUS = 1
GUIDED_EPS = 1e-3


# --------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Job:
    """One input file and where its result (and its before/after image) go."""

    source: Path
    output: Path
    compare: Path | None = None


@dataclass
class Plan:
    """What an apply run will do: `jobs` to colorize, `skipped` whose output already exists."""

    out: Path
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _walk(folder: Path, *, recursive: bool, exclude: Path) -> list[Path]:
    """Image files under `folder` (by suffix), sorted; hidden files and folders and `exclude` skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        # Pruning in place keeps os.walk out of hidden folders and the output folder.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (root_path / d).resolve() != exclude)
        if not recursive:
            dirs[:] = []
        for name in sorted(files):
            path = root_path / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append(path)
    return found


def _expand(inputs: Sequence[str]) -> list[Path]:
    """INPUT arguments -> existing paths; globs are expanded here for shells (and quotes) that don't."""
    paths = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.exists():
            paths.append(path)
            continue
        if any(char in text for char in "*?["):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise UsageError(f"no file matches {text!r}", "check the pattern")
            paths.extend(Path(match) for match in matches)
            continue
        raise UsageError(f"input {text} does not exist", "check the path")
    return paths


def default_out(inputs: Sequence[Path], cwd: Path | None = None) -> Path:
    """Where outputs go without --out.

    One folder INPUT: `FOLDER-colorized` beside it, so that folders colorized one after another
    never share an output folder (where a photo of the second would be skipped as done because
    the first had one of the same name). Other inputs: `./colorized`, unless that lies inside an
    input folder: then `FOLDER-colorized` beside it.
    """
    if len(inputs) == 1 and inputs[0].is_dir():
        return _beside(inputs[0].resolve())
    cwd = (cwd or Path.cwd()).resolve()
    candidate = cwd / "colorized"
    folders = sorted((p.resolve() for p in inputs if p.is_dir()), key=lambda p: len(p.parts))
    for folder in folders:
        if candidate.is_relative_to(folder):
            return _beside(folder)
    return candidate


def _beside(folder: Path) -> Path:
    return folder.parent / f"{folder.name or 'input'}-colorized"


class _Names:
    """Hands out output paths that never collide (case-insensitively), adding -2, -3, ... to stems."""

    def __init__(self, reserved: Iterable[Path] = ()) -> None:
        self._taken = {str(p).lower() for p in reserved}

    def claim(self, path: Path) -> Path:
        candidate, number = path, 1
        while str(candidate).lower() in self._taken:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        self._taken.add(str(candidate).lower())
        return candidate


def _compare_folder(relatives: Iterable[Path]) -> str:
    """`compare`, or `compare-2`, ... when an input folder of that name is mirrored into OUT too."""
    used = {relative.parts[0].lower() for relative in relatives if relative.parts}
    name, number = COMPARE_FOLDER, 1
    while name.lower() in used:
        number += 1
        name = f"{COMPARE_FOLDER}-{number}"
    return name


def plan_jobs(inputs: Sequence[str], *, out: Path | None = None, recursive: bool = True, format: str = "same",
              suffix: str = "", overwrite: bool = False, compare: bool = False) -> Plan:
    """Map INPUT files, folders and globs to output paths under `out` (default: see `default_out`).

    One folder INPUT: its contents go straight into `out`, sub-folders kept. Several INPUTs: a
    folder goes to `out/FOLDER/...` (two called `photos`: photos/ and photos-2/), a file to
    `out/NAME`. The output's stem gets `suffix`; its extension is the input's (`format="same"`,
    GIF -> PNG) or the format's. With `compare`, each output's before/after image is
    `out/compare/<same sub-folder>/STEM.jpg`. Clashing names get -2, -3, ...; no output is ever an
    input file, nor lands inside an input folder that a later run would read it from. Raises
    UsageError when the inputs name no image at all.
    """
    if format not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format {format!r}", f"use one of {', '.join(OUTPUT_FORMATS)}")
    paths = _expand(inputs)
    out = (out or default_out(paths)).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", "name a folder (it is created if missing)")
    one_folder = len(paths) == 1 and paths[0].is_dir()
    sources: list[tuple[Path, Path]] = []  # (file, folder it goes to relative to out)
    bases = _Names()
    # Folder inputs that a later run would read an output back from: all but those holding `out`,
    # which is skipped when they are read.
    exposed: list[Path] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            base = Path() if one_folder else bases.claim(Path(root.name or "input"))
            # An `out` inside the folder holds an earlier run's outputs (a link may lead there too).
            out_inside = out != root and out.is_relative_to(root)
            if not out_inside:
                exposed.append(root)
            for file in _walk(path, recursive=recursive, exclude=out):
                if not (out_inside and file.resolve().is_relative_to(out)):
                    sources.append((file, base / file.parent.relative_to(path)))
        else:  # a file named on the command line is taken even inside `out`; see the check below
            sources.append((path, Path()))
    seen: set[Path] = set()
    unique = []
    for file, relative in sources:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            unique.append((file, relative))
    if not unique:
        raise UsageError(f"no image files found in {', '.join(inputs)}",
                         f"recolor reads {', '.join(sorted(SUPPORTED_SUFFIXES))}"
                         + ("" if recursive else "; --recursive also looks into sub-folders"))

    plan = Plan(out=out)
    names = _Names(reserved=[out / "index.html"])
    compare_folder = out / _compare_folder(relative for _, relative in unique)
    gifs = 0
    for file, relative in unique:
        extension = file.suffix.lower() if format == "same" else FORMAT_SUFFIXES[format]
        if extension == ".gif":
            extension, gifs = ".png", gifs + 1
        output = names.claim(out / relative / f"{file.stem}{suffix}{extension}")
        if output.resolve() in seen:
            raise UsageError(f"the output {output} would overwrite an input", "choose another --out or a --suffix")
        inside = next((folder for folder in exposed if output.is_relative_to(folder)), None)
        if inside is not None:
            raise UsageError(f"the output {output} would land in the input folder {inside}, where the next run "
                             "would read it as an input", "choose an --out outside the input folder")
        preview = names.claim(compare_folder / relative / f"{output.stem}.jpg") if compare else None
        job = Job(source=file, output=output, compare=preview)
        done = output.exists() and (preview is None or preview.exists())
        (plan.skipped if done and not overwrite else plan.jobs).append(job)
    if gifs:
        plan.notes.append(f"{gifs} GIF input(s) will be written as PNG (GIF holds only 256 colors)")
    return plan


# ------------------------------------------------------------------------------------ pixel math


def render_shape(width: int, height: int, render_size: int) -> tuple[int, int]:
    """(height, width) for the network: long side `render_size`, both multiples of 32, aspect kept."""
    if render_size < RENDER_MULTIPLE or render_size % RENDER_MULTIPLE:
        raise UsageError(f"render size {render_size} is not a positive multiple of {RENDER_MULTIPLE}",
                         "use 256 (what the models are trained at), 384, 512, ...")
    long_side, short_side = max(width, height), min(width, height)
    short = max(RENDER_MULTIPLE, round(render_size * short_side / long_side / RENDER_MULTIPLE) * RENDER_MULTIPLE)
    return (render_size, short) if height >= width else (short, render_size)


# The full-resolution math runs in numpy float32 on bands of rows, one thread per photo: on a
# shared CPU torch's intra-op threads spin against each other (measured 7x slower at 2 threads on
# a loaded 2-core machine), while numpy's single-threaded ufuncs on cache-sized bands do not.
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
    if upsample not in UPSAMPLE_MODES:
        raise UsageError(f"unknown upsampling {upsample!r}", f"use one of {', '.join(UPSAMPLE_MODES)}")
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


def compare_image(before: np.ndarray, after: np.ndarray, *, max_side: int = 512, gap: int = 8) -> np.ndarray:
    """Before and after (uint8 or uint16) side by side, as uint8 (h, 2w + gap, 3), each scaled so its
    long side is <= `max_side`."""
    def thumbnail(rgb: np.ndarray) -> Image.Image:
        if rgb.dtype == np.uint16:
            rgb = ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return image

    left, right = thumbnail(before), thumbnail(after)
    sheet = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), (255, 255, 255))
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + gap, 0))
    return np.asarray(sheet)


# ------------------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class ApplyOptions:
    """How photos are colorized and written (see `recolor apply --help`)."""

    render_size: int = 256
    upsample: str = "bilinear"
    saturation: float = 1.0
    quality: int = 95
    batch_size: int = 8
    io_threads: int = min(4, os.cpu_count() or 1)
    pixel_budget: int = DEFAULT_PIXEL_BUDGET
    max_pixels: int = DEFAULT_MAX_PIXELS
    # torch's intra-op threads for a network on the CPU during a run; None: the cores the I/O
    # threads leave, at least 1. The two pools share the cores: with more, torch's threads spin
    # against the decoders and encoders (the network ran 2.6 times slower with 2 threads on a
    # loaded 2-core machine; see docs/performance.md).
    network_threads: int | None = None


@dataclass
class Result:
    """What happened to one job: `error` is None when its output was written."""

    job: Job
    error: RecolorError | None = None


@dataclass
class _Prepared:
    job: Job
    photo: Photo
    l_small: torch.Tensor  # (h, w) L in [0, 100] at render shape
    reserved: int = 0  # pixels counted against the budget for this photo

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.l_small.shape)  # type: ignore[return-value]


def _prepare(job: Job, options: ApplyOptions) -> _Prepared | Result:
    try:
        photo = read_image(job.source, max_pixels=options.max_pixels)
    except RecolorError as error:
        return Result(job, error)
    shape = render_shape(*photo.size, options.render_size)
    return _Prepared(job, photo, network_lightness(photo, shape))


def output_bit_depth(photo: Photo, output: Path, format: str | None) -> int:
    """16 for a 16-bit photo written as PNG or TIFF (`format`, or else `output`'s suffix), else 8.

    An 8-bit format gets an 8-bit join rather than a 16-bit one that write_image would round: half
    the output's memory, and no 16-bit encoding to pay for.
    """
    if photo.bit_depth != 16:
        return 8
    sixteen = format.upper() in SIXTEEN_BIT_FORMATS if format else output.suffix.lower() in _SIXTEEN_BIT_SUFFIXES
    return 16 if sixteen else 8


def _finish(item: _Prepared, ab_small: torch.Tensor, options: ApplyOptions, format: str | None) -> Result:
    rgb = join(item.photo, ab_small, item.l_small, upsample=options.upsample, saturation=options.saturation,
               bit_depth=output_bit_depth(item.photo, item.job.output, format))
    try:
        item.job.output.parent.mkdir(parents=True, exist_ok=True)
        write_image(item.job.output, rgb, like=item.photo, format=format, quality=options.quality)
        if item.job.compare is not None:
            item.job.compare.parent.mkdir(parents=True, exist_ok=True)
            write_image(item.job.compare, compare_image(item.photo.rgb, rgb), format="JPEG", quality=85)
    except RecolorError as error:
        return Result(item.job, error)
    except OSError as error:  # mkdir of an output folder
        return Result(item.job, ImageWriteError(f"{item.job.output}: cannot be written: {error.strerror or error}"))
    return Result(item.job)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16), so that oneDNN's
    bf16 convolutions beat fp32 ones."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence looked up
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision` ("auto", "fp32" or "bf16") -> the one the network runs in on `device`: "fp32",
    "bf16" or (auto on CUDA) "fp16". Raises UsageError for other names."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _fold_batch_norms(module: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in a Sequential into the
    conv's weights and bias, in place: the same function, one pass over each activation fewer."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for sequence in module.modules():
        if not isinstance(sequence, torch.nn.Sequential):
            continue
        for index in range(len(sequence) - 1):
            conv, norm = sequence[index], sequence[index + 1]
            if (isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
                    and norm.track_running_stats and not norm.training):
                sequence[index] = fuse_conv_bn_eval(conv, norm)
                sequence[index + 1] = torch.nn.Identity()


def _channels_last_input(lightness: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 1, H, W) -> the same values in `dtype`, laid out so that torch takes them as channels_last.

    A one-channel tensor is contiguous in both layouts and torch then calls it NCHW: the U-Net's
    last torch.cat of its channels_last features with L fell back to a generic copy, most of the
    40% of the network's time that torch.profiler gave the concatenations. The strides of a view
    into a two-channel buffer leave no doubt.
    """
    n, _, height, width = lightness.shape
    view = torch.empty((n, height, width, 2), dtype=dtype)[..., :1].permute(0, 3, 1, 2)
    return view.copy_(lightness)


class Colorizer:
    """Runs the generator on batches of render-size L (on `device`); everything else stays on the CPU.

    `precision`: see PRECISIONS. On the CPU the network runs from a copy of the generator made for
    inference: BatchNorms folded into the convolutions, channels_last, in bf16 when that is the
    precision (whole-model bf16 rather than autocast, which runs the U-Net's upsampling in fp32 and
    then concatenates mixed types: 14% slower here).
    """

    def __init__(self, generator: torch.nn.Module, device: torch.device, *, precision: str = "auto") -> None:
        self.generator = generator.eval()
        self.device = device
        self.precision = resolve_precision(precision, device)
        self._network = self.generator
        if device.type == "cpu":
            self._network = copy.deepcopy(self.generator)
            _fold_batch_norms(self._network)
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._network.to(dtype=dtype, memory_format=torch.channels_last)

    @torch.inference_mode()
    def ab(self, lightness_batch: torch.Tensor) -> torch.Tensor:
        """L (B, h, w) in [0, 100] -> ab (B, 2, h, w) in natural units, float32 on the CPU."""
        l_norm = lightness_batch[:, None] / 50 - 1
        if self.device.type == "cpu":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            ab_norm = self._network(_channels_last_input(l_norm, dtype))
        else:
            # Half precision on CUDA: the U-Net's output is a tanh, and the Lab join runs in float32.
            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
            with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                ab_norm = self._network(l_norm.to(self.device))
        # contiguous: a channels_last result would reach join's numpy code with strided rows.
        return (ab_norm.float().cpu() * AB_SCALE).contiguous()


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: left alone) inside the block."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def colorize_files(jobs: Sequence[Job], colorizer: Colorizer, *, options: ApplyOptions = ApplyOptions(),
                   output_format: str | None = None,
                   on_result: Callable[[Result], None] = lambda result: None) -> list[Result]:
    """Colorize `jobs`; decoding runs ahead of the network and encoding behind it, in threads.

    Photos are batched by render shape, up to `options.batch_size`. A photo's pixels count against
    `options.pixel_budget` from before it is decoded (its header gives the size) until its output
    is written; one photo is always let in, however large. A file that cannot be read or written
    becomes a failed `Result`; the others go on. `output_format` None: from each output's suffix.
    """
    results: list[Result] = []
    pending = deque(jobs)
    reading: dict[Future, int] = {}  # future -> pixels reserved for it
    writing: dict[Future, int] = {}
    ready: list[_Prepared] = []
    held = 0  # pixels reserved: being decoded, decoded and waiting, or being encoded

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    def admit() -> None:
        nonlocal held
        while pending and len(reading) < options.io_threads + options.batch_size and (
                held < options.pixel_budget or not (ready or reading or writing)):
            job = pending.popleft()
            try:
                width, height = read_image_size(job.source)
            except RecolorError as error:
                record(Result(job, error))
                continue
            # A photo over max_pixels is refused by read_image before decoding: reserve nothing.
            pixels = width * height if width * height <= options.max_pixels else 0
            held += pixels
            reading[readers.submit(_prepare, job, options)] = pixels

    def collect(finished: Iterable[Future]) -> None:
        nonlocal held
        for future in finished:
            if future in reading:
                pixels = reading.pop(future)
                item = future.result()
                if isinstance(item, Result):
                    held -= pixels
                    record(item)
                else:
                    item.reserved = pixels
                    ready.append(item)
            else:
                held -= writing.pop(future)
                record(future.result())

    threads = options.network_threads
    if threads is None and colorizer.device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) - options.io_threads)
    with ThreadPoolExecutor(options.io_threads, thread_name_prefix="recolor-read") as readers, \
            ThreadPoolExecutor(options.io_threads, thread_name_prefix="recolor-write") as writers, \
            _torch_threads(threads):
        try:
            while pending or reading or ready or writing:
                admit()
                collect([f for f in (*reading, *writing) if f.done()])
                starved = not pending or held >= options.pixel_budget
                if ready and (len(ready) >= options.batch_size or (starved and not reading)):
                    batch = _take_batch(ready, options.batch_size)
                    ab = colorizer.ab(torch.stack([item.l_small for item in batch]))
                    for item, item_ab in zip(batch, ab):
                        writing[writers.submit(_finish, item, item_ab, options, output_format)] = item.reserved
                    # Encoding runs behind the network; wait when it falls far behind.
                    while len(writing) > 2 * options.io_threads:
                        collect(wait(writing, return_when=FIRST_COMPLETED).done)
                elif reading or writing:
                    collect(wait([*reading, *writing], return_when=FIRST_COMPLETED).done)
        except BaseException as error:
            for future in (*reading, *writing):
                future.cancel()
            if isinstance(error, KeyboardInterrupt):
                # Writes already under way finish (files are written whole or not at all): they count.
                writers.shutdown(wait=True)
                collect([future for future in writing if not future.cancelled()])
            raise
    return results


def _take_batch(ready: list[_Prepared], batch_size: int) -> list[_Prepared]:
    """Remove and return up to `batch_size` items of the most common render shape in `ready`."""
    counts: dict[tuple[int, int], int] = {}
    for item in ready:
        counts[item.shape] = counts.get(item.shape, 0) + 1
    shape = max(counts, key=counts.__getitem__)
    batch = [item for item in ready if item.shape == shape][:batch_size]
    chosen = {id(item) for item in batch}
    ready[:] = [item for item in ready if id(item) not in chosen]
    return batch


def output_format_for(format: str) -> str | None:
    """The writer's format for `--format` (None: from each output's suffix)."""
    return None if format == "same" else {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}[format]


@dataclass
class Summary:
    """Counts and timing of one apply run."""

    done: int
    skipped: int
    failed: list[Result]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def run(plan: Plan, colorizer: Colorizer, *, options: ApplyOptions, format: str = "same",
        on_result: Callable[[Result], None] = lambda result: None) -> Summary:
    """Colorize `plan`'s jobs (the contact sheet is the caller's: recolor.report.write_index).

    Ctrl-C raises Interrupted, saying how many outputs were written and how many are left.
    """
    start = time.perf_counter()
    results: list[Result] = []

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    try:
        colorize_files(plan.jobs, colorizer, options=options, output_format=output_format_for(format),
                       on_result=record)
    except KeyboardInterrupt as interrupt:
        done = sum(result.error is None for result in results)
        failed = len(results) - done
        raise Interrupted(f"{done} of {len(plan.jobs)} image(s) colorized into {plan.out}"
                          + (f" ({failed} failed)" if failed else "") + f", {len(plan.jobs) - done} left",
                          "the same command resumes: the outputs written are skipped") from interrupt
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error is not None]
    return Summary(done=len(results) - len(failed), skipped=len(plan.skipped), failed=failed, seconds=seconds)
