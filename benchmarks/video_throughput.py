"""Frames per second of `recolor apply` on films, and its peak memory, on this machine.

Builds a gray test film of `--seconds` at 24 fps per `--height` (854 x 480, 1920 x 1080: a slow pan
across scikit-image's astronaut with grain, H.264 CRF 18, a mono AAC track), colorizes it with
the built-in model at default settings (temporal smoothing on), and prints frames per second,
the frames per CPU second that the process got (a figure that moves less with the machine's
load than the wall-clock one), the peak resident memory while colorizing (VmHWM, reset before),
and the load average: on a shared machine the wall-clock figures move with it.

    PYTHONPATH=src python benchmarks/video_throughput.py --height 480 1080 --seconds 4
    PYTHONPATH=src python benchmarks/video_throughput.py --height 480 --seconds 150   # a long film
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
from skimage import data
from skimage.color import rgb2gray
from skimage.transform import resize

from recolor.apply.network import Colorizer
from recolor.apply.pipeline import ApplyOptions
from recolor.apply.plan import Job
from recolor.hub.registry import load_model
from recolor.apply.films import VideoOptions, colorize_videos

RATE = Fraction(24)
WIDTHS = {480: 854, 720: 1280, 1080: 1920}


def write_film(path: Path, *, height: int, seconds: float) -> int:
    """A gray pan with grain and a tone, streamed to `path` frame by frame; returns the frame count."""
    import av

    width = WIDTHS[height]
    base = resize(rgb2gray(data.astronaut()), (int(height * 1.25), int(width * 1.25)), anti_aliasing=True)
    rng = np.random.default_rng(0)
    grains = [rng.normal(0, 6, (height, width)).astype(np.float32) for _ in range(8)]
    count = int(seconds * RATE)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.codec_context.options = {"crf": "18", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
        for index in range(count):
            phase = index / max(count - 1, 1)
            top = int((base.shape[0] - height) * phase)
            left = int((base.shape[1] - width) * (0.5 + 0.5 * np.sin(6.28 * phase)))
            gray = np.clip(base[top:top + height, left:left + width] * 255 + grains[index % len(grains)], 0, 255)
            rgb = np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, 1 / RATE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        samples = int(48000 * count / RATE)
        for start in range(0, samples, 1024):
            chunk = (0.2 * np.sin(np.arange(start, start + 1024) * 2 * np.pi * 440 / 48000)).astype(np.float32)
            block = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
            block.sample_rate, block.pts = 48000, start
            container.mux(sound.encode(block))
        container.mux(sound.encode(None))
    return count


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (FFmpeg's and torch's included)."""
    times = os.times()
    return times.user + times.system


def reset_peak_memory() -> None:
    """Linux: start VmHWM (peak resident memory) over from the current resident size."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory_mib() -> float:
    return _status_mib("VmHWM:")


def resident_mib() -> float:
    return _status_mib("VmRSS:")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, nargs="+", default=[480, 1080], choices=sorted(WIDTHS))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--model", default="gan")
    parser.add_argument("--no-temporal", dest="temporal", action="store_false")
    args = parser.parse_args()

    generator, _ = load_model(args.model, device=torch.device("cpu"))
    colorizer = Colorizer(generator, torch.device("cpu"))
    print(f"model {args.model} ({colorizer.precision}), {os.cpu_count()} cores, torch {torch.__version__}; resident "
          f"{peak_memory_mib():.0f} MiB with it loaded", flush=True)
    for height in args.height:
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / f"film{height}.mp4"
            frames = write_film(source, height=height, seconds=args.seconds)
            job = Job(source=source, output=Path(folder) / "out.mp4")
            before = os.getloadavg()[0]
            reset_peak_memory()
            cpu_start = _cpu_seconds()
            start = time.perf_counter()
            done = [0]

            def progress(count: int) -> None:  # the memory as the film goes by: it must not grow
                done[0] += count
                if done[0] % 480 == 0:
                    print(f"  {done[0]} frames, {time.perf_counter() - start:.0f} s: resident {resident_mib():.0f} MiB, "
                          f"peak {peak_memory_mib():.0f} MiB", flush=True)

            [result] = colorize_videos([job], colorizer, options=ApplyOptions(),
                                       video=VideoOptions(temporal=args.temporal), on_frames=progress)
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu_start
            if result.error is not None:
                raise SystemExit(str(result.error))
            size = job.output.stat().st_size / source.stat().st_size
            film = f"{result.frames} of {frames} frames ({float(frames / RATE):.0f} s of film)"
            print(f"{WIDTHS[height]}x{height}: {film} in "
                  f"{seconds:.1f} s = {result.frames / seconds:.2f} frames/s ({result.frames / cpu:.2f} frames per "
                  f"CPU second of this process, {cpu / seconds:.2f} cores' worth on average); peak memory "
                  f"{peak_memory_mib():.0f} MiB; "
                  f"output {size:.2f}x the input's size; load average {before:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after", flush=True)


if __name__ == "__main__":
    main()
