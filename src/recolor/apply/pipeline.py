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
outputs are computed at 8 bits. Steps 2 and 3 are `recolor.apply.join`: OpenCV kernels on bands of rows
in the encoding threads, or torch on the network's GPU (`recolor.apply.join_device`, with
`ApplyOptions.join_device`), where the shrink of step 1 runs too. Decoding runs in a thread pool
ahead of the network and encoding (with the CPU join) in another one behind it; photos are batched
across files by render shape, and the pixels held at once are capped. The network is an engine of
`recolor.engine` (OpenVINO on the CPU, torch on a GPU), its threads limited to the cores the I/O
threads leave. On the CPU nothing here imports torch. docs/performance.md has the figures.
"""

from __future__ import annotations

import functools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from recolor.errors import ImageWriteError, Interrupted, RecolorError, UsageError
from recolor.io.photo import DEFAULT_MAX_PIXELS, Photo
from recolor.io.read import read_image, read_image_size
from recolor.io.write import write_image
from recolor.apply.join import join, network_lightness, opencv_threads
from recolor.apply.plan import Job, Plan, output_format_for
from recolor.io.video import is_video

if TYPE_CHECKING:
    from recolor.engine.choice import Engine

# The generator's input must be a multiple of this (2 ** (depth + 1) at the default depth 4).
RENDER_MULTIPLE = 32
# Photos held in memory at once (decoded, waiting for the network or for encoding), in pixels;
# at least one photo is always admitted, however large.
DEFAULT_PIXEL_BUDGET = 64_000_000
# Photos per batch. On the CPU, batches of 4 keep decoding, the network and encoding flowing side
# by side better than 8: 43.7-46.7 against 40.1-40.6 photos/s at 1 MP on 2 cores, the EfficientNet
# default (96 photos made by benchmarks/apply_speed.py's make_photos; `recolor apply DIR --out OUT
# --overwrite --batch-size B`, its summary line; three alternated runs). On a GPU (not measured) 8.
CPU_BATCH_SIZE = 4
DEVICE_BATCH_SIZE = 8
# The output formats that recolor.io.write.write_image writes at 16 bits; JPEG, WebP and BMP hold 8.
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_SIXTEEN_BIT_SUFFIXES = frozenset({".png", ".tif", ".tiff"})


# ------------------------------------------------------------------------------------ pixel math


def render_shape(width: int, height: int, render_size: int) -> tuple[int, int]:
    """(height, width) for the network: long side `render_size`, both multiples of 32, aspect kept."""
    if render_size < RENDER_MULTIPLE or render_size % RENDER_MULTIPLE:
        raise UsageError(f"render size {render_size} is not a positive multiple of {RENDER_MULTIPLE}",
                         "use 256 (what the models are trained at), 384, 512, ...")
    long_side, short_side = max(width, height), min(width, height)
    short = max(RENDER_MULTIPLE, round(render_size * short_side / long_side / RENDER_MULTIPLE) * RENDER_MULTIPLE)
    return (render_size, short) if height >= width else (short, render_size)


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
    batch_size: int = CPU_BATCH_SIZE
    # Decoding threads, and as many encoding threads; None: min(4, cores) when the join runs on the
    # CPU (in the encoding threads), every core when it runs on the network's GPU.
    io_threads: int | None = None
    pixel_budget: int = DEFAULT_PIXEL_BUDGET
    max_pixels: int = DEFAULT_MAX_PIXELS
    # The network's threads when it runs on the CPU; None: the cores the I/O
    # threads leave, at least 1. The two pools share the cores: with more, torch's threads spin
    # against the decoders and encoders (the network ran 2.6 times slower with 2 threads on a
    # loaded 2-core machine; see docs/performance.md).
    network_threads: int | None = None
    # Where the shrink and the join run: "auto" on the network's device when that is a GPU (then
    # everything after decoding runs there), else on the CPU; "cpu": the CPU join (OpenCV) always;
    # "network": on the network's device through torch, also when that is the CPU (tests).
    join_device: str = "auto"
    # CPU cores this process may use (None: all); the defaults above are sized to them.
    cores: int | None = None


@dataclass
class Result:
    """What happened to one job: `error` is None when its output was written; `frames`: a video's
    frames written."""

    job: Job
    error: RecolorError | None = None
    frames: int = 0


JOIN_DEVICES = ("auto", "cpu", "network")


@dataclass
class _Prepared:
    job: Job
    photo: Photo
    shape: tuple[int, int]  # (h, w) render shape
    l_small: np.ndarray | None = None  # (h, w) L in [0, 100] at render shape (the CPU join)
    pixels: Any = None  # a torch tensor from recolor.apply.join_device.host_pixels (the join on the GPU)
    reserved: int = 0  # pixels counted against the budget for this photo


def _prepare(job: Job, options: ApplyOptions, *, on_device: bool, pin: bool) -> _Prepared | Result:
    try:
        photo = read_image(job.source, max_pixels=options.max_pixels)
    except RecolorError as error:
        return Result(job, error)
    shape = render_shape(*photo.size, options.render_size)
    if on_device:  # the shrink runs on the device too: hand over the pixels, ready to copy
        from recolor.apply.join_device import host_pixels

        return _Prepared(job, photo, shape, pixels=host_pixels(photo, pin=pin))
    return _Prepared(job, photo, shape, l_small=network_lightness(photo, shape))


def output_bit_depth(photo: Photo, output: Path, format: str | None) -> int:
    """16 for a 16-bit photo written as PNG or TIFF (`format`, or else `output`'s suffix), else 8.

    An 8-bit format gets an 8-bit join rather than a 16-bit one that write_image would round: half
    the output's memory, and no 16-bit encoding to pay for.
    """
    if photo.bit_depth != 16:
        return 8
    sixteen = format.upper() in SIXTEEN_BIT_FORMATS if format else output.suffix.lower() in _SIXTEEN_BIT_SUFFIXES
    return 16 if sixteen else 8


def default_batch_size(engine: Engine) -> int:
    """Photos per batch when `--batch-size` is not given: see CPU_BATCH_SIZE."""
    return DEVICE_BATCH_SIZE if engine.on_gpu else CPU_BATCH_SIZE


def _join_on_cpu(item: _Prepared, ab_small: np.ndarray, options: ApplyOptions,
                 format: str | None) -> Callable[[], np.ndarray]:
    return functools.partial(join, item.photo, ab_small, item.l_small, upsample=options.upsample,
                             saturation=options.saturation,
                             bit_depth=output_bit_depth(item.photo, item.job.output, format))


def _finish(item: _Prepared, make_rgb: Callable[[], np.ndarray], options: ApplyOptions,
            format: str | None) -> Result:
    """Runs in an encoding thread: the result's pixels (`make_rgb`: the CPU join, or waiting for the
    device's), then the output file and its before/after image."""
    rgb = make_rgb()
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


def cpu_join_threads(options: ApplyOptions, engine: Engine) -> tuple[int, int | None]:
    """(I/O threads, the network's threads) for a run whose join is on the CPU, sized as
    `colorize_files` sizes them: a network on the CPU gets the cores the I/O threads leave (at least 1)."""
    cores = options.cores or os.cpu_count() or 1
    io_threads = options.io_threads or min(4, cores)
    threads = options.network_threads
    if threads is None and not engine.on_gpu:
        threads = max(1, cores - io_threads)
    return io_threads, threads


def _on_device(batch: list[_Prepared], engine: Any, options: ApplyOptions,
               format: str | None) -> list[Callable[[], np.ndarray]]:
    """Shrink, network and join of `batch` on the torch engine's device; each result's copy back to
    the CPU is started, and waited for by the function returned for it (in an encoding thread)."""
    import torch

    from recolor.apply.join_device import download, join_tensor, network_lightness_tensor

    with torch.inference_mode():
        device = engine.torch_device
        levels = [65536 if item.photo.rgb.dtype == np.uint16 else 256 for item in batch]
        pixels = [item.pixels.to(device, non_blocking=True) for item in batch]
        for item in batch:
            item.pixels = None  # torch keeps the pinned buffer until its copy is done
        smalls = [network_lightness_tensor(p, item.shape, levels=level)
                  for p, item, level in zip(pixels, batch, levels)]
        ab = engine.ab_tensor(torch.stack(smalls), on_device=True)
        return [download(join_tensor(p, item_ab, small, levels=level, upsample=options.upsample,
                                     saturation=options.saturation,
                                     bit_depth=output_bit_depth(item.photo, item.job.output, format)))
                for p, item_ab, small, item, level in zip(pixels, ab, smalls, batch, levels)]


def colorize_files(jobs: Sequence[Job], engine: Engine, *, options: ApplyOptions = ApplyOptions(),
                   output_format: str | None = None,
                   on_result: Callable[[Result], None] = lambda result: None) -> list[Result]:
    """Colorize `jobs`; decoding runs ahead of the network and encoding behind it, in threads.

    Photos are batched by render shape, up to `options.batch_size`. A photo's pixels count against
    `options.pixel_budget` from before it is decoded (its header gives the size) until its output
    is written; one photo is always let in, however large. A file that cannot be read or written
    becomes a failed `Result`; the others go on. `output_format` None: from each output's suffix.
    With the join on the network's GPU (`options.join_device`) only decoding and encoding run on
    the CPU, in threads sized to its cores, from page-locked buffers.
    """
    if options.join_device not in JOIN_DEVICES:
        raise UsageError(f"unknown join device {options.join_device!r}", f"use one of {', '.join(JOIN_DEVICES)}")
    on_device = options.join_device == "network" or (options.join_device == "auto" and engine.on_gpu)
    if on_device and engine.name != "torch":
        raise UsageError(f"the join on the network's device needs the torch engine, not {engine.name}",
                         "use join_device='cpu' (or 'auto'), or the torch engine")
    pin = on_device and engine.device.startswith("cuda")
    cores = options.cores or os.cpu_count() or 1
    io_threads = options.io_threads or (cores if on_device else min(4, cores))
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
        while pending and len(reading) < io_threads + options.batch_size and (
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
            reading[readers.submit(_prepare, job, options, on_device=on_device, pin=pin)] = pixels

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
    if threads is None and not engine.on_gpu:
        threads = max(1, cores - io_threads)
    # One OpenCV thread per join: the joins already run side by side, one per encoding thread.
    with ThreadPoolExecutor(io_threads, thread_name_prefix="recolor-read") as readers, \
            ThreadPoolExecutor(io_threads, thread_name_prefix="recolor-write") as writers, \
            engine.threads(threads), opencv_threads(1):
        try:
            while pending or reading or ready or writing:
                admit()
                collect([f for f in (*reading, *writing) if f.done()])
                starved = not pending or held >= options.pixel_budget
                if ready and (len(ready) >= options.batch_size or (starved and not reading)):
                    batch = _take_batch(ready, options.batch_size)
                    if on_device:
                        makers = _on_device(batch, engine, options, output_format)
                    else:
                        ab = engine.ab(np.stack([item.l_small for item in batch]))  # type: ignore[misc]
                        makers = [_join_on_cpu(item, item_ab, options, output_format) for item, item_ab in zip(batch, ab)]
                    for item, make_rgb in zip(batch, makers):
                        writing[writers.submit(_finish, item, make_rgb, options, output_format)] = item.reserved
                    # Encoding runs behind the network; wait when it falls far behind.
                    while len(writing) > 2 * io_threads:
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


@dataclass
class Summary:
    """Counts and timing of one apply run; `frames` and `video_seconds` are its videos' part."""

    done: int
    skipped: int
    failed: list[Result]
    seconds: float
    frames: int = 0
    videos: int = 0
    video_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        photo_seconds = self.seconds - self.video_seconds
        return (self.done - self.videos) / photo_seconds if photo_seconds > 0 else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.video_seconds if self.video_seconds > 0 else 0.0


def run(plan: Plan, engine: Engine, *, options: ApplyOptions, format: str = "same",
        on_result: Callable[[Result], None] = lambda result: None,
        videos: Callable[..., list[Result]] | None = None) -> Summary:
    """Colorize `plan`'s jobs (the contact sheet is the caller's: recolor.apply.report.write_index); its
    videos go to `videos(jobs, on_result=...)`: `recolor.apply.films.colorize_videos` with its options
    bound (a module above this one, which this one does not import).

    Ctrl-C raises Interrupted, saying how many outputs were written and how many are left.
    """
    start = time.perf_counter()
    results: list[Result] = []

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    photos = [job for job in plan.jobs if not is_video(job.source)]
    films = [job for job in plan.jobs if is_video(job.source)]
    if films and videos is None:
        raise ValueError("the plan holds videos: pass videos=")
    video_seconds = 0.0
    try:
        colorize_files(photos, engine, options=options, output_format=output_format_for(format),
                       on_result=record)
        if films:
            video_start = time.perf_counter()
            videos(films, on_result=record)
            video_seconds = time.perf_counter() - video_start
    except KeyboardInterrupt as interrupt:
        done = sum(result.error is None for result in results)
        failed = len(results) - done
        raise Interrupted(f"{done} of {len(plan.jobs)} {'file' if films else 'image'}(s) colorized into {plan.out}"
                          + (f" ({failed} failed)" if failed else "") + f", {len(plan.jobs) - done} left"
                          + (" (the film being colorized was discarded whole)" if films else ""),
                          "the same command resumes: the outputs written are skipped") from interrupt
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error is not None]
    done_videos = [r for r in results if r.error is None and is_video(r.job.source)]
    return Summary(done=len(results) - len(failed), skipped=len(plan.skipped), failed=failed, seconds=seconds,
                   frames=sum(r.frames for r in done_videos), videos=len(done_videos), video_seconds=video_seconds)
