"""Colorizing films: frames stream through the photo engine, and their colors are held still over time.

Each frame goes through the steps of a photo (`recolor.apply.pipeline`): shrunk to the render size, its
L through the network in batches of frames, the ab upsampled and joined with the frame's own
full-resolution L. Colorized one by one, frames flicker: grain, exposure flicker and gate weave
change the network's input a little from frame to frame and its colors with it. So between the
network and the join, `TemporalSmoother` averages the render-size ab over time:

- an exponential average, the past weighted `strength` (0.8 by default: about the last five
  frames), pixel by pixel lowered where L moved, so moving things leave no trail of color;
- reset at scene cuts, found where the render-size L changes by more than `CUT_THRESHOLD` on
  average once the median change is taken out (exposure flicker is not a cut);
- chroma kept: averaging ab vectors of differing hue shortens them (washes the color out), so the
  averaged vector is scaled to the average of the chroma itself (`blend`).

L stays each frame's own, so no detail is lost. Frames stream: a few batches are held at a time,
whatever the film's length. Reading and writing the files is `recolor.io.video`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from recolor.apply.pipeline import ApplyOptions, Result, cpu_join_threads, render_shape
from recolor.apply.plan import Job
from recolor.errors import RecolorError, VideoError
from recolor.io.photo import Photo
from recolor.apply.join import join, network_lightness, opencv_threads
from recolor.io.video import Frame, VideoReader, VideoWriter

if TYPE_CHECKING:
    from recolor.engine.choice import Engine

# The weight of the past in the average, where nothing moves: the color settles over about
# 1 / (1 - strength) frames.
DEFAULT_STRENGTH = 0.8
# Mean |change of L| (CIE L units, render size, the median change taken out) above which a frame
# starts a new scene. Within the shots of benchmarks/video_flicker.py's grainy, flickering, weaving
# film it stays under 4.5; across its cuts it is 21 to 28 (the benchmark prints it).
CUT_THRESHOLD = 12.0
# Local |change of L| (render size, 3x3 mean) at which the past's weight has fallen to 1/e: grain
# at render size moves L by 2 to 5, an edge that moves by 10 and more.
MOTION_SCALE = 10.0
# The chroma kept by `blend` never scales the averaged ab by more than this, so that where hues
# cancel out (the average near gray) noise is not blown up into color.
MAX_CHROMA_GAIN = 3.0


@dataclass(frozen=True)
class VideoOptions:
    """How films are colorized and written, on top of `ApplyOptions` (see `recolor apply --help`)."""

    temporal: bool = True
    strength: float = DEFAULT_STRENGTH
    # 1-100 for a constant quality; None: the input's bit rate.
    quality: int | None = None


# ------------------------------------------------------------------------------- temporal math


def lightness_change(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """|change| (h, w) of render-size L in [0, 100] from `previous` to `current`, less the median
    change: exposure flicker moves all of L at once and counts for nothing, and the median is not
    pulled along by a moving object as the mean would be."""
    difference = current - previous
    return (difference - difference.median()).abs()


def scene_change(previous: torch.Tensor, current: torch.Tensor) -> float:
    """Mean `lightness_change` of two render-size L (h, w): under `CUT_THRESHOLD` within a shot."""
    return float(lightness_change(previous, current).mean())


def past_weight(previous: torch.Tensor, current: torch.Tensor, *, strength: float,
                motion_scale: float = MOTION_SCALE) -> torch.Tensor:
    """The weight of the past (h, w) in [0, strength]: `strength` where L stood still, falling
    towards 0 where it moved (`lightness_change` over a 3x3 window, at `motion_scale` to 1/e)."""
    change = lightness_change(previous, current)
    local = F.avg_pool2d(change[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    return strength * torch.exp(-(local / motion_scale) ** 2)


def chroma(ab: torch.Tensor) -> torch.Tensor:
    """sqrt(a^2 + b^2) of ab (2, h, w) -> (h, w)."""
    return torch.hypot(ab[0], ab[1])


def blend(mean_ab: torch.Tensor, mean_chroma: torch.Tensor, ab: torch.Tensor,
          weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the exponential average: (mean ab, mean chroma, the frame's smoothed ab).

    `ab` (2, h, w) is this frame's; `weight` (h, w) that of the past. The smoothed ab is the mean
    ab, rescaled (by at most MAX_CHROMA_GAIN) to the mean chroma: where the hue holds still the
    two agree and the scale is 1; where it flickers, the average of the vectors is shorter than
    the average chroma, and the color would fade without it.
    """
    mean_ab = weight * mean_ab + (1 - weight) * ab
    mean_chroma = weight * mean_chroma + (1 - weight) * chroma(ab)
    length = chroma(mean_ab)
    gain = torch.where(length > 1e-3, mean_chroma / length.clamp_min(1e-3), torch.ones_like(length))
    return mean_ab, mean_chroma, mean_ab * gain.clamp(max=MAX_CHROMA_GAIN)


class TemporalSmoother:
    """Feeds frame after frame of render-size (L, ab) through `blend`; counts the cuts it found."""

    def __init__(self, *, strength: float = DEFAULT_STRENGTH, cut_threshold: float = CUT_THRESHOLD) -> None:
        if not 0 <= strength < 1:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength = strength
        self.cut_threshold = cut_threshold
        self.cuts = 0
        self._previous: torch.Tensor | None = None
        self._mean_ab = self._mean_chroma = torch.empty(0)

    def __call__(self, lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """L (h, w) in [0, 100] and the network's ab (2, h, w) -> the ab to join, (2, h, w)."""
        previous, self._previous = self._previous, lightness
        cut = previous is None or previous.shape != lightness.shape
        if cut or scene_change(previous, lightness) > self.cut_threshold:
            self.cuts += previous is not None
            self._mean_ab, self._mean_chroma = ab, chroma(ab)
            return ab
        weight = past_weight(previous, lightness, strength=self.strength)
        self._mean_ab, self._mean_chroma, smoothed = blend(self._mean_ab, self._mean_chroma, ab, weight)
        return smoothed


# -------------------------------------------------------------------------------------- pipeline


@dataclass
class _Pending:
    frame: Frame
    photo: Photo
    l_small: np.ndarray  # (h, w) L in [0, 100] at render shape


def frame_photo(frame: Frame, job: Job) -> Photo:
    """A decoded frame as the photo engine's `Photo` (8-bit sRGB, no alpha or metadata)."""
    rgb = frame.rgb
    gray = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    return Photo(path=job.source, rgb=rgb, alpha=None, format="VIDEO", mode="RGB", bit_depth=8, icc_profile=None,
                 exif=None, dpi=None, is_grayscale=gray)


def colorize_video(job: Job, engine: Engine, joiners: ThreadPoolExecutor, *, options: ApplyOptions,
                   video: VideoOptions, on_video: Callable[[Job, int | None], None] = lambda job, frames: None,
                   on_frames: Callable[[int], None] = lambda count: None) -> Result:
    """Colorize one film into `job.output`; a file that cannot be read or written is a failed Result.

    Frames are batched (`options.batch_size`) through the network, smoothed in order, joined in
    `joiners` and encoded in order; at most two batches' frames are held. `on_video` is told the
    frame count the container states (None: unknown), `on_frames` each frame written.
    """
    try:
        with VideoReader(job.source) as reader:
            on_video(job, reader.info.frames)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            with VideoWriter(job.output, reader, quality=video.quality) as writer:
                smoother = TemporalSmoother(strength=video.strength) if video.temporal else None
                audio_held: list = []  # audio packets that come before the first frame is written
                batch: list[_Pending] = []
                joining: deque[tuple[Frame, Future]] = deque()

                def write_joined(keep: int) -> None:
                    while len(joining) > keep:
                        frame, future = joining.popleft()
                        writer.write(frame, future.result())
                        on_frames(1)
                        for packet in audio_held:
                            writer.copy(packet)
                        audio_held.clear()

                def run_batch() -> None:
                    ab = engine.ab(np.stack([item.l_small for item in batch]))
                    for item, item_ab in zip(batch, ab):
                        if smoother is not None:  # render-size math, in torch
                            item_ab = smoother(torch.from_numpy(item.l_small), torch.from_numpy(item_ab)).numpy()
                        joining.append((item.frame, joiners.submit(
                            join, item.photo, item_ab, item.l_small, upsample=options.upsample,
                            saturation=options.saturation, bit_depth=8)))
                    batch.clear()
                    # The joins of this batch run while the next one is decoded and colorized.
                    write_joined(keep=options.batch_size)

                for item in reader.items():
                    if not isinstance(item, Frame):
                        (audio_held.append if writer.written == 0 else writer.copy)(item)
                        continue
                    photo = frame_photo(item, job)
                    l_small = network_lightness(photo, render_shape(*photo.size, options.render_size))
                    if batch and batch[0].l_small.shape != l_small.shape:
                        run_batch()
                    batch.append(_Pending(item, photo, l_small))
                    if len(batch) >= options.batch_size:
                        run_batch()
                if batch:
                    run_batch()
                write_joined(keep=0)
                writer.finish()
                frames = writer.written
    except RecolorError as error:
        return Result(job, error)
    except OSError as error:  # mkdir of an output folder, a full disk at the rename
        return Result(job, VideoError(f"{job.output}: cannot be written: {error.strerror or error}"))
    return Result(job, frames=frames)


def colorize_videos(jobs: Sequence[Job], engine: Engine, *, options: ApplyOptions = ApplyOptions(),
                    video: VideoOptions = VideoOptions(), on_result: Callable[[Result], None] = lambda result: None,
                    on_video: Callable[[Job, int | None], None] = lambda job, frames: None,
                    on_frames: Callable[[int], None] = lambda count: None) -> list[Result]:
    """Colorize films one after the other (each uses every core); a bad file fails alone."""
    results = []
    io_threads, network_threads = cpu_join_threads(options, engine)
    # One OpenCV thread per join: the joins already run side by side.
    with ThreadPoolExecutor(io_threads, thread_name_prefix="recolor-join") as joiners, \
            engine.threads(network_threads), opencv_threads(1):
        for job in jobs:
            result = colorize_video(job, engine, joiners, options=options, video=video, on_video=on_video,
                                    on_frames=on_frames)
            results.append(result)
            on_result(result)
    return results
