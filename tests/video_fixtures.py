"""Small films the video tests build with PyAV: a few frames of a gray picture, with audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# Container suffix -> (video encoder, audio encoder or None) the fixture writes it with.
CODECS = {".mp4": ("libx264", "aac"), ".mkv": ("libx264", "aac"), ".mov": ("libx264", "aac"),
          ".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", None)}


def film_frames(count: int, *, width: int = 64, height: int = 48, noise: float = 0.0,
                seed: int = 0) -> list[np.ndarray]:
    """`count` gray frames (H, W) uint8 of one picture (bands, a bright square) plus `noise` (std,
    in levels), different in every frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    picture = 40 + 150 * (x > width // 2) + 50 * ((y // 8) % 2) * (x < width // 3)
    picture = np.where((abs(x - width * 0.7) < width / 8) & (abs(y - height / 2) < height / 6), 230, picture)
    return [np.clip(picture + rng.normal(0, noise, picture.shape), 0, 255).astype(np.uint8) if noise
            else picture.astype(np.uint8) for _ in range(count)]


def make_film(path: Path, frames: list[np.ndarray] | None = None, *, rate: Fraction = Fraction(24000, 1001),
              audio: bool = True, rotation: int = 0, title: str = "test film", crf: int = 10,
              faststart: bool = False, codec: str | None = None, pix_fmt: str = "yuv420p") -> Path:
    """Write `frames` (gray (H, W) or RGB (H, W, 3) uint8; default 12 of `film_frames`) as a film
    with a sine tone as its audio (where the container's fixture codec has one); `faststart`: an
    MP4 or MOV with its index (and so its frame count) before the frames; `codec`: another video
    encoder than the container's fixture one."""
    import av

    frames = film_frames(12) if frames is None else frames
    video_codec, audio_codec = CODECS[path.suffix.lower()]
    video_codec = codec or video_codec
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as container:
        container.metadata["title"] = title
        stream = container.add_stream(video_codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if video_codec in ("libx264", "libvpx-vp9"):
            stream.codec_context.options = {"crf": str(crf)}
        elif video_codec == "mpeg4":
            stream.codec_context.options = {"qmin": "2", "qmax": "2"}
        if rotation:
            stream.set_display_rotation(rotation)
        stream.metadata["language"] = "eng"
        sound = None
        if audio and audio_codec:
            sound = container.add_stream(audio_codec, rate=48000)
            sound.layout = "mono"
        for index, pixels in enumerate(frames):
            rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            seconds = len(frames) / rate
            samples = np.sin(np.arange(int(48000 * seconds)) * 2 * np.pi * 440 / 48000).astype(np.float32) * 0.3
            size = sound.codec_context.frame_size or 960
            for start in range(0, len(samples), size):
                chunk = np.zeros((1, size), np.float32)
                part = samples[start:start + size]
                chunk[0, :len(part)] = part
                block = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                block.sample_rate, block.pts = 48000, start
                container.mux(sound.encode(block))
            container.mux(sound.encode(None))
    return path


def read_film(path: Path) -> dict:
    """What the tests check of a film: its frames as RGB, timestamps, streams and tags."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        decoded = list(container.decode(video))
        info = {
            "frames": [f.to_ndarray(format="rgb24") for f in decoded],
            "pts_seconds": [float(f.pts * f.time_base) for f in decoded],
            "stated_frames": video.frames, "rate": video.average_rate, "codec": video.codec_context.name,
            "rotation": decoded[0].rotation if decoded else 0, "title": container.metadata.get("title"),
            "language": video.metadata.get("language"), "duration": container.duration,
            "audio": [s.codec_context.name for s in container.streams.audio],
        }
    with av.open(str(path)) as container:
        info["audio_packets"] = [bytes(p) for s in container.streams.audio[:1]
                                 for p in container.demux(s) if p.size]
    return info
