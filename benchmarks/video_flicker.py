"""Color flicker of `recolor apply` on films, with and without --temporal, against the color original's.

A test film is made from scikit-image's color photos (astronaut, coffee, chelsea: one shot each,
cut one to the next), 640 x 480 at 24 fps: the color original weaves in the gate (a smooth random
shift of about a pixel), and its gray copy has an old film's faults added to L: exposure flicker
(a gain on L drawn per frame) and grain (noise per pixel). The gray film is written as H.264 (CRF
12), colorized with the built-in model through the same engine as `recolor apply` (default
settings, and --no-temporal), and read back.

Flicker: the mean |change of ab| from one frame to the next within each shot, of ab averaged over
8 x 8 pixel blocks (the low resolution at which flicker shows; grain-sized changes are not
color flicker), in CIE units. Chroma: the mean sqrt(a^2 + b^2) of those blocks. The scene-change
statistic (recolor.apply.films.scene_change) within shots and across cuts is printed too.

    PYTHONPATH=src python benchmarks/video_flicker.py [--frames 36] [--model gan]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage import data
from skimage.color import lab2rgb, rgb2lab
from skimage.transform import resize

from recolor.apply.join import network_lightness
from recolor.apply.network import Colorizer
from recolor.apply.pipeline import ApplyOptions, render_shape
from recolor.apply.plan import Job
from recolor.io.photo import Photo
from recolor.hub.registry import load_model
from recolor.apply.films import TemporalSmoother, VideoOptions, colorize_videos, scene_change

SIZE = (480, 640)  # (height, width)
RATE = Fraction(24)


def color_shot(photo: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The photo at 640 x 480 (cropped to 4:3), weaving: a smooth random shift (std about 1 px)."""
    height, width = photo.shape[:2]
    target = SIZE[1] / SIZE[0]
    if width / height > target:
        crop = int(height * target)
        photo = photo[:, (width - crop) // 2:(width - crop) // 2 + crop]
    else:
        crop = int(width / target)
        photo = photo[(height - crop) // 2:(height - crop) // 2 + crop]
    still = resize(photo, SIZE, anti_aliasing=True)  # float in [0, 1]
    walk = np.cumsum(rng.normal(0, 0.5, (frames, 2)), axis=0)
    weave = 0.6 * (walk - walk.mean(axis=0)) + rng.normal(0, 0.4, (frames, 2))
    return [np.clip(ndimage.shift(still, (dy, dx, 0), order=1, mode="nearest"), 0, 1) for dy, dx in weave]


def film_faults(color: np.ndarray, rng: np.random.Generator, *, grain: float, flicker: float) -> np.ndarray:
    """The gray frame of a color frame: L with exposure flicker (gain) and grain (std in L units),
    as 8-bit gray sRGB (H, W, 3)."""
    lightness = rgb2lab(color)[..., 0]
    lightness = lightness * (1 + rng.normal(0, flicker))
    grain_field = ndimage.gaussian_filter(rng.normal(0, 1, lightness.shape), 0.7)
    lightness = lightness + grain * grain_field / grain_field.std()
    lab = np.stack([np.clip(lightness, 0, 100), np.zeros_like(lightness), np.zeros_like(lightness)], axis=-1)
    return np.round(lab2rgb(lab) * 255).astype(np.uint8)


def write_film(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"crf": "12"}
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, 1 / RATE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def read_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def block_ab(rgb: np.ndarray, block: int = 8) -> np.ndarray:
    """ab (h/block, w/block, 2) averaged over block x block pixels; `rgb` uint8 or float in [0, 1]."""
    ab = rgb2lab(rgb / 255.0 if rgb.dtype == np.uint8 else rgb)[..., 1:]
    h, w = ab.shape[0] // block * block, ab.shape[1] // block * block
    return ab[:h, :w].reshape(h // block, block, w // block, block, 2).mean(axis=(1, 3))


def flicker_and_chroma(frames: list[np.ndarray], shots: list[int]) -> tuple[float, float]:
    """Mean |ab change| between consecutive frames of the same shot, and mean chroma."""
    small = [block_ab(frame) for frame in frames]
    changes = [np.abs(b - a).mean() for i, (a, b) in enumerate(zip(small, small[1:])) if shots[i] == shots[i + 1]]
    return float(np.mean(changes)), float(np.mean([np.hypot(s[..., 0], s[..., 1]).mean() for s in small]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=36, help="frames per shot (three shots)")
    parser.add_argument("--model", default="gan")
    parser.add_argument("--grain", type=float, default=4.0, help="grain std in L units")
    parser.add_argument("--flicker", type=float, default=0.04, help="exposure flicker: std of the gain on L")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    originals, gray, shots = [], [], []
    for shot, photo in enumerate((data.astronaut(), data.coffee(), data.chelsea())):
        color = color_shot(photo, args.frames, rng)
        originals += color
        gray += [film_faults(frame, rng, grain=args.grain, flicker=args.flicker) for frame in color]
        shots += [shot] * args.frames

    generator, _ = load_model(args.model, device=torch.device("cpu"))
    colorizer = Colorizer(generator, torch.device("cpu"))
    options = ApplyOptions()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "film.mp4"
        write_film(source, gray)
        rows = [("color original", *flicker_and_chroma([(f * 255).round().astype(np.uint8) for f in originals], shots))]
        for name, temporal in (("--temporal (default)", True), ("--no-temporal", False)):
            job = Job(source=source, output=Path(folder) / f"{temporal}.mp4")
            start = time.perf_counter()
            [result] = colorize_videos([job], colorizer, options=options, video=VideoOptions(temporal=temporal))
            if result.error is not None:
                raise SystemExit(str(result.error))
            seconds = time.perf_counter() - start
            rows.append((name, *flicker_and_chroma(read_frames(job.output), shots)))
            print(f"{name}: {len(gray)} frames in {seconds:.1f} s", flush=True)

        # The cut statistic on the network's own input, as the smoother sees it.
        decoded = read_frames(source)
        shape = render_shape(SIZE[1], SIZE[0], options.render_size)
        small = [network_lightness(Photo(path=None, rgb=f, alpha=None, format="VIDEO", mode="RGB", bit_depth=8,
                                         icc_profile=None, exif=None, dpi=None, is_grayscale=True), shape)
                 for f in decoded]
        within = [scene_change(a, b) for i, (a, b) in enumerate(zip(small, small[1:])) if shots[i] == shots[i + 1]]
        across = [scene_change(a, b) for i, (a, b) in enumerate(zip(small, small[1:])) if shots[i] != shots[i + 1]]
        smoother = TemporalSmoother()
        for lightness in small:
            smoother(lightness, torch.zeros(2, *lightness.shape))

    original = rows[0][1]
    print(f"\n{len(gray)} frames of 640x480, 3 shots; grain {args.grain} L, exposure flicker {args.flicker:.0%}, "
          f"model {args.model}, render size {options.render_size}; load average {os.getloadavg()[0]:.2f}")
    print("| film | flicker (mean frame-to-frame \\|Δab\\|, 8x8 blocks) | vs the color original | mean chroma |")
    print("|---|---|---|---|")
    for name, flicker, chroma_mean in rows:
        print(f"| {name} | {flicker:.3f} | {flicker / original:.2f}x | {chroma_mean:.2f} |")
    print(f"\nscene_change within shots: max {max(within):.2f}, mean {np.mean(within):.2f}; "
          f"across cuts: {', '.join(f'{v:.1f}' for v in across)}; cuts found by the smoother: {smoother.cuts} "
          f"of {len(across)}")


if __name__ == "__main__":
    main()
